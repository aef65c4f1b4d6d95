// Package memstore is an object store in memory: a Server holds the
// buckets of one account, and Open returns a store.Store bound to a key.
// It behaves as the real stores do where the driver depends on it (errors
// by fault kind, key order, a non-empty bucket refusing deletion), so the
// conformance suite (pkg/store/storetest) and unit tests run without a
// server, root or FUSE.
package memstore

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/store"
)

// Server is one account's buckets. The zero value is not usable; use New.
type Server struct {
	key     string
	now     func() time.Time
	mu      sync.Mutex
	buckets map[string]*memBucket
}

type memBucket struct {
	created time.Time
	objects map[string][]byte
}

// New returns an empty account that accepts key.
func New(key string) *Server {
	return &Server{key: key, now: time.Now, buckets: map[string]*memBucket{}}
}

// Open returns the account as seen with key (wrapped by store.Wrap): every
// call with another key is fault.Denied, as a real store answers wrong
// credentials.
func (s *Server) Open(key string) store.Store {
	return store.Wrap(&client{s: s, ok: key == s.key})
}

type client struct {
	s  *Server
	ok bool
}

// lock takes the account's lock once the key is checked; the caller
// unlocks.
func (c *client) lock(what string) error {
	if !c.ok {
		return fmt.Errorf("%w: %s: the credentials are not allowed (InvalidAccessKeyId)", fault.Denied, what)
	}
	c.s.mu.Lock()
	return nil
}

// bucket returns the bucket name; the lock is held.
func (c *client) bucket(name string) (*memBucket, error) {
	b, ok := c.s.buckets[name]
	if !ok {
		return nil, fmt.Errorf("%w: bucket %q does not exist", fault.NotFound, name)
	}
	return b, nil
}

// Close has nothing to release: the account lives in memory.
func (c *client) Close() error { return nil }

func (c *client) CreateBucket(_ context.Context, name string) error {
	if err := c.lock("creating bucket " + name); err != nil {
		return err
	}
	defer c.s.mu.Unlock()
	if _, ok := c.s.buckets[name]; ok {
		return fmt.Errorf("%w: bucket %q already exists", fault.Conflict, name)
	}
	c.s.buckets[name] = &memBucket{created: c.s.now(), objects: map[string][]byte{}}
	return nil
}

func (c *client) HeadBucket(_ context.Context, name string) error {
	if err := c.lock("bucket " + name); err != nil {
		return err
	}
	defer c.s.mu.Unlock()
	_, err := c.bucket(name)
	return err
}

func (c *client) DeleteBucket(_ context.Context, name string) error {
	if err := c.lock("deleting bucket " + name); err != nil {
		return err
	}
	defer c.s.mu.Unlock()
	b, err := c.bucket(name)
	if err != nil {
		return err
	}
	if len(b.objects) > 0 {
		return fmt.Errorf("%w: deleting bucket %q: BucketNotEmpty", fault.Conflict, name)
	}
	delete(c.s.buckets, name)
	return nil
}

func (c *client) ListBuckets(context.Context) ([]store.Bucket, error) {
	if err := c.lock("listing buckets"); err != nil {
		return nil, err
	}
	defer c.s.mu.Unlock()
	out := make([]store.Bucket, 0, len(c.s.buckets))
	for name, b := range c.s.buckets {
		out = append(out, store.Bucket{Name: name, Created: b.created})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (c *client) GetObject(_ context.Context, name, key string) ([]byte, error) {
	if err := c.lock("reading " + name + "/" + key); err != nil {
		return nil, err
	}
	defer c.s.mu.Unlock()
	b, err := c.bucket(name)
	if err != nil {
		return nil, err
	}
	data, ok := b.objects[key]
	if !ok {
		return nil, fmt.Errorf("%w: %s/%s does not exist", fault.NotFound, name, key)
	}
	return append([]byte(nil), data...), nil
}

func (c *client) PutObject(_ context.Context, name, key string, data []byte) error {
	if err := c.lock("writing " + name + "/" + key); err != nil {
		return err
	}
	defer c.s.mu.Unlock()
	b, err := c.bucket(name)
	if err != nil {
		return err
	}
	b.objects[key] = append([]byte(nil), data...)
	return nil
}

func (c *client) DeleteObjects(_ context.Context, name string, keys []string) error {
	if err := c.lock("deleting objects in " + name); err != nil {
		return err
	}
	defer c.s.mu.Unlock()
	if len(keys) > store.MaxDeleteBatch {
		return fmt.Errorf("%w: %d keys in one delete, more than %d", fault.Invalid, len(keys), store.MaxDeleteBatch)
	}
	b, err := c.bucket(name)
	if err != nil {
		return err
	}
	for _, k := range keys {
		delete(b.objects, k)
	}
	return nil
}

// List lists a snapshot of the keys taken under the lock; fn runs without
// it, so fn may call the store.
func (c *client) List(_ context.Context, name, prefix string, limit int, fn func(store.Object) error) error {
	if err := c.lock("listing " + name); err != nil {
		return err
	}
	b, err := c.bucket(name)
	if err != nil {
		c.s.mu.Unlock()
		return err
	}
	var objs []store.Object
	for k, v := range b.objects {
		if strings.HasPrefix(k, prefix) {
			objs = append(objs, store.Object{Key: k, Size: int64(len(v))})
		}
	}
	c.s.mu.Unlock()
	sort.Slice(objs, func(i, j int) bool { return objs[i].Key < objs[j].Key })
	for i, o := range objs {
		if limit > 0 && i >= limit {
			return nil
		}
		if err := fn(o); err != nil {
			return err
		}
	}
	return nil
}
