package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
)

// The rules every store shares, enforced by Wrap in one place rather than
// by each store package.
const (
	// MaxObjectSize bounds the small objects the driver reads and writes
	// whole (marks, volume records). Stores read at most one byte more
	// (LimitObject), so a larger object is refused, never truncated.
	MaxObjectSize = 1 << 20
	// MaxDeleteBatch is the most keys one DeleteObjects call of a store
	// receives (S3's limit for one request).
	MaxDeleteBatch = 1000
	// retries is how often a failed idempotent call is tried again when
	// the store was unavailable; the SDKs retry single requests
	// themselves, so this only bridges a short outage between them.
	retries = 1
	// retryBackoff is the wait before the first retry; it doubles.
	retryBackoff = 200 * time.Millisecond
)

// Wrap returns s with the shared rules enforced:
//
//   - DeleteBucket of a missing bucket succeeds;
//   - DeleteObjects passes keys to s in batches of at most MaxDeleteBatch;
//   - GetObject refuses an object over MaxObjectSize (fault.Invalid) and
//     PutObject refuses to write one;
//   - List never calls fn more than limit times;
//   - every call but CreateBucket (whose retry could answer Conflict for
//     the bucket it has just created) is tried again once after
//     fault.Unavailable, unless ctx ends first; List only while it has
//     not yet delivered an object.
//
// Every Backend.Open returns a wrapped store. Wrapping twice is harmless.
func Wrap(s Store) Store {
	if w, ok := s.(wrapped); ok {
		return w
	}
	return wrapped{s}
}

// Opened wraps the store an Open function returns, passing its error on:
// every Backend.Open is store.Opened(open(...)).
func Opened(s Store, err error) (Store, error) {
	if err != nil {
		return nil, err
	}
	return Wrap(s), nil
}

type wrapped struct{ s Store }

func (w wrapped) CreateBucket(ctx context.Context, bucket string) error {
	return w.s.CreateBucket(ctx, bucket)
}

func (w wrapped) HeadBucket(ctx context.Context, bucket string) error {
	return retry(ctx, func() error { return w.s.HeadBucket(ctx, bucket) })
}

func (w wrapped) DeleteBucket(ctx context.Context, bucket string) error {
	err := retry(ctx, func() error { return w.s.DeleteBucket(ctx, bucket) })
	if errors.Is(err, fault.NotFound) {
		return nil
	}
	return err
}

func (w wrapped) ListBuckets(ctx context.Context) ([]Bucket, error) {
	var out []Bucket
	err := retry(ctx, func() (err error) { out, err = w.s.ListBuckets(ctx); return err })
	return out, err
}

func (w wrapped) GetObject(ctx context.Context, bucket, key string) ([]byte, error) {
	var data []byte
	err := retry(ctx, func() (err error) { data, err = w.s.GetObject(ctx, bucket, key); return err })
	if err == nil && len(data) > MaxObjectSize {
		return nil, fmt.Errorf("%w: object %s/%s is larger than %d bytes, the most the driver reads whole", fault.Invalid, bucket, key, MaxObjectSize)
	}
	return data, err
}

func (w wrapped) PutObject(ctx context.Context, bucket, key string, data []byte) error {
	if len(data) > MaxObjectSize {
		return fmt.Errorf("%w: object %s/%s would be %d bytes, more than the %d the driver writes whole", fault.Invalid, bucket, key, len(data), MaxObjectSize)
	}
	return retry(ctx, func() error { return w.s.PutObject(ctx, bucket, key, data) })
}

func (w wrapped) DeleteObjects(ctx context.Context, bucket string, keys []string) error {
	for len(keys) > 0 {
		batch := keys[:min(len(keys), MaxDeleteBatch)]
		if err := retry(ctx, func() error { return w.s.DeleteObjects(ctx, bucket, batch) }); err != nil {
			return err
		}
		keys = keys[len(batch):]
	}
	return nil
}

func (w wrapped) Close() error { return w.s.Close() }

// errLimit stops a store's listing once the limit is reached.
var errLimit = errors.New("listing limit reached")

func (w wrapped) List(ctx context.Context, bucket, prefix string, limit int, fn func(Object) error) error {
	n := 0
	var partial error
	err := retry(ctx, func() error {
		if partial != nil {
			// A listing that failed after delivering objects is not
			// repeated (fn would see them twice): its error stands.
			return partial
		}
		err := w.s.List(ctx, bucket, prefix, limit, func(o Object) error {
			if limit > 0 && n >= limit {
				return errLimit
			}
			n++
			return fn(o)
		})
		if err != nil && n > 0 {
			partial = err
		}
		return err
	})
	if errors.Is(err, errLimit) {
		return nil
	}
	return err
}

// retry runs call, and again after fault.Unavailable, up to retries times
// with a doubling backoff, until ctx ends.
func retry(ctx context.Context, call func() error) error {
	err := call()
	wait := retryBackoff
	for i := 0; i < retries && errors.Is(err, fault.Unavailable); i++ {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		err = call()
		wait *= 2
	}
	return err
}

// ReadObject reads a small object's body: at most MaxObjectSize+1 bytes,
// so Wrap can tell a larger object from one of the limit.
func ReadObject(r io.Reader) ([]byte, error) {
	return io.ReadAll(io.LimitReader(r, MaxObjectSize+1))
}

// ObjectDeleter is implemented by stores that delete one object per
// request; DeleteEach builds their DeleteObjects from it.
type ObjectDeleter interface {
	// DeleteObject deletes one object; a missing one may be fault.NotFound.
	DeleteObject(ctx context.Context, bucket, key string) error
}

// DeleteEach deletes keys one by one through d; a missing key (or bucket)
// is not an error.
func DeleteEach(ctx context.Context, d ObjectDeleter, bucket string, keys []string) error {
	for _, k := range keys {
		if err := d.DeleteObject(ctx, bucket, k); err != nil && !errors.Is(err, fault.NotFound) {
			return err
		}
	}
	return nil
}
