// Package store defines the one small interface every object store
// implements (one package per store below this one), and the registry that
// turns a store kind plus per-volume secrets into a working Store and into the
// rclone options the mounter uses for the same bucket.
//
// Implementations map their SDK errors to fault kinds: fault.NotFound for a
// missing bucket or object, fault.Denied for refused or invalid credentials,
// fault.Conflict for a bucket name taken by another account, and
// fault.Unavailable for anything that may succeed on retry.
package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
)

// Object is one listed object.
type Object struct {
	Key  string
	Size int64
}

// Bucket is one listed bucket.
type Bucket struct {
	Name    string
	Created time.Time
}

// TakenElsewhere marks a CreateBucket conflict the store attributes to
// another account (S3's BucketAlreadyExists, as against
// BucketAlreadyOwnedByYou): such a bucket is never the driver's, even if
// its owner lets the driver's credentials in. Stores whose buckets live
// inside the credentials' own account or namespace (Azure, OCI) never
// return it.
var TakenElsewhere = errors.New("owned by another account")

// AccountScoped is implemented by the stores whose bucket names may live
// inside the credentials' own account or namespace: Azure's containers,
// OCI's buckets, R2's buckets (AccountScoped true). There any bucket the
// store finds is the account's own. Elsewhere (S3 and most stores
// speaking it, GCS) one name space is shared by every account, and a
// bucket another account made can let the driver's credentials in (its
// policy says so): only the buckets the credentials' own ListBuckets
// shows are the account's (bucket.Keeper's Ensure relies on it).
type AccountScoped interface {
	Store
	AccountScoped() bool
}

// IsAccountScoped reports whether s (wrapped by Wrap or not) is
// AccountScoped and says true.
func IsAccountScoped(s Store) bool {
	if w, ok := s.(wrapped); ok {
		s = w.s
	}
	a, ok := s.(AccountScoped)
	return ok && a.AccountScoped()
}

// Store is one store account, bound to one set of credentials. A Store
// serves one CSI call or one command: whoever opens it closes it.
type Store interface {
	// CreateBucket creates bucket. It returns fault.Conflict when the bucket
	// already exists, whoever owns it; the error also matches
	// TakenElsewhere when the store says another account owns it.
	CreateBucket(ctx context.Context, bucket string) error
	// HeadBucket returns nil if bucket exists and the credentials can use it.
	HeadBucket(ctx context.Context, bucket string) error
	// DeleteBucket deletes an empty bucket; a missing bucket is not an error.
	DeleteBucket(ctx context.Context, bucket string) error
	// ListBuckets lists buckets of the credentials' own account (S3's
	// ListBuckets, on IBM COS the service instance's; GCS: the driver's
	// --gcs-project; Azure: the account; OCI: the compartment); a bucket
	// of another account that lets the credentials in is not listed.
	ListBuckets(ctx context.Context) ([]Bucket, error)
	// GetObject reads a small object whole.
	GetObject(ctx context.Context, bucket, key string) ([]byte, error)
	// PutObject writes a small object whole.
	PutObject(ctx context.Context, bucket, key string, data []byte) error
	// DeleteObjects deletes keys; missing keys are not an error.
	DeleteObjects(ctx context.Context, bucket string, keys []string) error
	// List calls fn for each object under prefix, in key order, stopping
	// after limit objects when limit > 0 or when fn returns an error.
	List(ctx context.Context, bucket, prefix string, limit int, fn func(Object) error) error
	// Close releases the store's connections (an SDK client's pool would
	// otherwise keep one open per Store until its idle timeout). The
	// Store is not used after Close.
	Close() error
}

// Secrets are the per-volume credentials from a CSI secret, by key. Each
// store documents the keys it reads. They must never be logged.
type Secrets map[string]string

// Backend is what one store kind registers.
type Backend struct {
	// Open returns a Store (wrapped by Wrap) using secrets, or the
	// driver's ambient identity when secrets hold none of the store's keys. location is the
	// Spec.Location of the volume (Azure account, IBM or OCI region),
	// possibly "" for the configured default.
	Open func(secrets Secrets, location string) (Store, error)
	// Rclone returns the rclone backend options (type, provider, endpoint,
	// credentials, ...) that reach the same account. location is the
	// Spec.Location of the volume (Azure account, region), possibly "".
	Rclone func(secrets Secrets, location string) (map[string]string, error)
	// SecretKeys are the secret keys the store reads; a secret holding none
	// of them means the driver's ambient identity.
	SecretKeys []string
	// DefaultLocation is the location of buckets the driver creates when
	// the volume names none (the configured Azure account, IBM region).
	// CreateVolume records it in the volume ID, so a later change of the
	// driver's configuration never moves an existing volume.
	DefaultLocation string
	// Env lists environment variables a FUSE server may inherit for the
	// store's ambient credentials: paths and names, never secrets.
	Env []string
}

// Registry maps store kinds ("s3", "gcs", ...) to their configured backends.
type Registry map[string]Backend

// Get returns the backend for kind, or fault.Invalid naming the configured ones.
func (r Registry) Get(kind string) (Backend, error) {
	b, ok := r[kind]
	if !ok {
		return Backend{}, fmt.Errorf("%w: store %q is not configured on this driver; configured: %s", fault.Invalid, kind, strings.Join(r.Kinds(), ", "))
	}
	return b, nil
}

// HasCredentials reports whether secrets hold any of the store's keys.
func (b Backend) HasCredentials(secrets Secrets) bool {
	for _, k := range b.SecretKeys {
		if secrets[k] != "" {
			return true
		}
	}
	return false
}

// Env returns the union of the backends' environment passthrough lists.
func (r Registry) Env() []string {
	var out []string
	for _, b := range r {
		out = append(out, b.Env...)
	}
	return out
}

// Kinds lists the configured store kinds, sorted.
func (r Registry) Kinds() []string { return slices.Sorted(maps.Keys(r)) }

// FilePrefix marks rclone options that are files rather than values: the
// option "file:NAME" holds the content of a file that the consumer writes to
// a private directory (Materialize); "{file:NAME}" in other values becomes
// its path. OCI keys, for one, reach rclone only through files.
const FilePrefix = "file:"

// Materialize writes the file entries of opts into dir (0700) as 0600
// files and returns the options with the files replaced by their paths.
// Placeholders are replaced in option values and in file contents alike (a
// config file naming a key file).
func Materialize(opts map[string]string, dir string) (map[string]string, error) {
	files := map[string]string{}
	var pairs []string
	for k, v := range opts {
		name, isFile := strings.CutPrefix(k, FilePrefix)
		if !isFile {
			continue
		}
		if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
			return nil, fmt.Errorf("bad private file name %q", name)
		}
		files[name] = v
		pairs = append(pairs, "{"+FilePrefix+name+"}", filepath.Join(dir, name))
	}
	subst := strings.NewReplacer(pairs...)
	if len(files) > 0 {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(subst.Replace(content)), 0o600); err != nil {
			return nil, err
		}
	}
	out := make(map[string]string, len(opts))
	for k, v := range opts {
		if !strings.HasPrefix(k, FilePrefix) {
			out[k] = subst.Replace(v)
		}
	}
	return out, nil
}

// HTTPError classifies a store's HTTP error answer: what names the
// operation, code is the service's error code (may be ""). Every store maps
// its SDK errors through it, so a status means the same fault everywhere.
func HTTPError(status int, code, what string) error {
	detail := code
	if detail == "" {
		detail = fmt.Sprintf("HTTP %d", status)
	}
	switch status {
	case http.StatusNotFound:
		return fmt.Errorf("%w: %s does not exist", fault.NotFound, what)
	case http.StatusUnauthorized, http.StatusForbidden:
		return fmt.Errorf("%w: %s: the credentials are not allowed (%s)", fault.Denied, what, detail)
	case http.StatusConflict:
		return fmt.Errorf("%w: %s: %s", fault.Conflict, what, detail)
	case http.StatusBadRequest:
		return fmt.Errorf("%w: %s: %s", fault.Invalid, what, detail)
	}
	return fmt.Errorf("%w: %s: HTTP %d %s", fault.Unavailable, what, status, code)
}
