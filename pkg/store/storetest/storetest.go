// Package storetest is the conformance suite every store.Store runs: the
// same tests, through the same ownership rules (package bucket), against a
// real server or emulator of each store (test/stores_test.go, make test)
// and against the in-memory store (pkg/store/memstore, make unit).
package storetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bucket-csi/bucket-csi/pkg/bucket"
	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/store"
)

// Target describes one store under test.
type Target struct {
	// Open returns a Store with valid credentials.
	Open func(t *testing.T) store.Store
	// OpenWrong returns a Store with wrong credentials.
	OpenWrong func(t *testing.T) store.Store
	// Objects is how many objects the purge test writes (enough to page).
	Objects int
}

var seq atomic.Int64

// name returns a bucket name unique in this process and valid everywhere.
func name(base string) string {
	return fmt.Sprintf("%s-%d-%d", base, time.Now().UnixNano()%1e6, seq.Add(1))
}

// failing wraps a Store and fails some calls: the next failMark writes of
// the mark, failDeletes object deletions and failBucketDeletes bucket
// deletions, with err.
type failing struct {
	store.Store
	err                                      error
	failMark, failDeletes, failBucketDeletes int
}

func (f *failing) PutObject(ctx context.Context, bucket_, key string, data []byte) error {
	if key == bucket.OwnerKey && f.failMark > 0 {
		f.failMark--
		return f.err
	}
	return f.Store.PutObject(ctx, bucket_, key, data)
}

func (f *failing) DeleteObjects(ctx context.Context, bucket_ string, keys []string) error {
	if f.failDeletes > 0 {
		f.failDeletes--
		if err := f.Store.DeleteObjects(ctx, bucket_, keys[:1]); err != nil { // some progress, then the failure
			return err
		}
		return f.err
	}
	return f.Store.DeleteObjects(ctx, bucket_, keys)
}

func (f *failing) DeleteBucket(ctx context.Context, bucket_ string) error {
	if f.failBucketDeletes > 0 {
		f.failBucketDeletes--
		return f.err
	}
	return f.Store.DeleteBucket(ctx, bucket_)
}

// newKeeper returns ownership rules with a new key and journal, as a
// freshly started driver has.
func newKeeper(t *testing.T) (*bucket.Keeper, *bucket.Marker) {
	m, err := bucket.NewMarker(bucket.NewKey())
	if err != nil {
		t.Fatal(err)
	}
	return bucket.NewKeeper(m, nil), m
}

// ref names a bucket of the store under test.
func ref(b string) bucket.Ref { return bucket.Ref{Store: "conformance", Bucket: b} }

// status reads b's mark status and state.
func status(t *testing.T, k *bucket.Keeper, s store.Store, b string) (bucket.Status, string) {
	t.Helper()
	f, err := k.Read(context.Background(), s, ref(b))
	if err != nil {
		t.Fatal(err)
	}
	if f.Mark != nil {
		return f.Status, f.Mark.State
	}
	return f.Status, ""
}

// Run runs the suite.
func Run(t *testing.T, tg Target) {
	ctx := context.Background()
	t.Run("create, mark, reuse, list", func(t *testing.T) {
		s := tg.Open(t)
		k, _ := newKeeper(t)
		b := name("conf-create")
		owned, err := k.Ensure(ctx, s, ref(b), bucket.Owner{CreatedBy: "pvc ns/claim"})
		if err != nil || !owned {
			t.Fatalf("Ensure new bucket: owned=%v err=%v", owned, err)
		}
		owned, err = k.Ensure(ctx, s, ref(b), bucket.Owner{CreatedBy: "pvc ns/other"})
		if err != nil || !owned {
			t.Fatalf("Ensure existing marked bucket: owned=%v err=%v", owned, err)
		}
		f, err := k.Read(ctx, s, ref(b))
		if err != nil || f.Status != bucket.Genuine || f.Mark.CreatedBy != "pvc ns/claim" || f.Mark.Bucket != b {
			t.Fatalf("owner mark = %+v, %v; want a genuine mark of the first creator", f, err)
		}
		all, err := s.ListBuckets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, lb := range all {
			if lb.Name == b {
				found = true
				if lb.Created.IsZero() || time.Since(lb.Created) > time.Hour {
					t.Errorf("creation time of %s = %v", b, lb.Created)
				}
			}
		}
		if !found {
			t.Fatalf("ListBuckets does not list %s", b)
		}
		if err := s.CreateBucket(ctx, b); !errors.Is(err, fault.Conflict) {
			t.Fatalf("CreateBucket of an existing bucket = %v, want fault.Conflict", err)
		}
	})
	t.Run("a failed mark write is finished by the retry of the same process", func(t *testing.T) {
		k, _ := newKeeper(t)
		s := &failing{Store: tg.Open(t), err: fmt.Errorf("%w: injected", fault.Unavailable), failMark: 1}
		b := name("conf-orphan")
		if _, err := k.Ensure(ctx, s, ref(b), bucket.Owner{CreatedBy: "pvc ns/retry"}); !errors.Is(err, fault.Unavailable) {
			t.Fatalf("Ensure with the mark write failing = %v, want the injected fault.Unavailable", err)
		}
		if st, _ := status(t, k, s, b); st != bucket.Unmarked {
			t.Fatalf("bucket after the failed mark: %v, want unmarked", st)
		}
		owned, err := k.Ensure(ctx, s, ref(b), bucket.Owner{CreatedBy: "pvc ns/retry"})
		if err != nil || !owned {
			t.Fatalf("retry after a failed mark: owned=%v err=%v", owned, err)
		}
		if err := k.Purge(ctx, s, ref(b), bucket.PurgeOptions{}); err != nil {
			t.Fatalf("the adopted bucket cannot be deleted: %v", err)
		}
	})
	t.Run("an empty unmarked bucket not created by this process is never adopted; an admin re-marks it", func(t *testing.T) {
		s := tg.Open(t)
		k, _ := newKeeper(t) // a restarted driver: its journal is empty
		b := name("conf-crash")
		if err := s.CreateBucket(ctx, b); err != nil { // created, then crashed (or someone else's)
			t.Fatal(err)
		}
		owned, err := k.Ensure(ctx, s, ref(b), bucket.Owner{CreatedBy: "pvc ns/retry"})
		if !errors.Is(err, fault.Precondition) || owned || !strings.Contains(err.Error(), "storage remark") {
			t.Fatalf("Ensure of an empty unmarked bucket = owned %v, %v; want fault.Precondition naming `storage remark`", owned, err)
		}
		if st, _ := status(t, k, s, b); st != bucket.Unmarked {
			t.Fatalf("the refused bucket was marked: %v", st)
		}
		if err := k.Purge(ctx, s, ref(b), bucket.PurgeOptions{}); !errors.Is(err, fault.Precondition) {
			t.Fatalf("Purge of the unmarked bucket = %v, want fault.Precondition", err)
		}
		if err := k.Remark(ctx, s, ref(b), bucket.Owner{CreatedBy: "cli remark"}); err != nil {
			t.Fatal(err)
		}
		if owned, err := k.Ensure(ctx, s, ref(b), bucket.Owner{}); err != nil || !owned {
			t.Fatalf("Ensure after remark: owned=%v err=%v", owned, err)
		}
		if err := k.Purge(ctx, s, ref(b), bucket.PurgeOptions{}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("an interrupted purge is never silently reused and is finished by the retry", func(t *testing.T) {
		k, _ := newKeeper(t)
		real := tg.Open(t)
		s := &failing{Store: real, err: fmt.Errorf("%w: injected", fault.Unavailable), failDeletes: 1}
		b := name("conf-interrupt")
		if _, err := k.Ensure(ctx, s, ref(b), bucket.Owner{}); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 30; i++ {
			if err := s.PutObject(ctx, b, fmt.Sprintf("o/%03d", i), []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		if err := k.Purge(ctx, s, ref(b), bucket.PurgeOptions{}); !errors.Is(err, fault.Unavailable) { // a purge that died early
			t.Fatalf("interrupted purge = %v, want the injected fault.Unavailable", err)
		}
		if st, state := status(t, k, real, b); st != bucket.Genuine || state != bucket.StateDeleting {
			t.Fatalf("half-purged bucket: mark %v state %q, want genuine and %q", st, state, bucket.StateDeleting)
		}
		if owned, err := k.Ensure(ctx, real, ref(b), bucket.Owner{}); !errors.Is(err, fault.Precondition) || !strings.Contains(err.Error(), "being deleted") {
			t.Fatalf("Ensure of a half-purged bucket: owned=%v err=%v, want fault.Precondition (being deleted)", owned, err)
		}
		if err := k.CheckNotDeleting(ctx, real, ref(b)); !errors.Is(err, fault.Precondition) {
			t.Fatalf("CheckNotDeleting of a half-purged bucket = %v", err)
		}
		if err := k.Purge(ctx, real, ref(b), bucket.PurgeOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := real.HeadBucket(ctx, b); !errors.Is(err, fault.NotFound) {
			t.Fatalf("bucket after the resumed purge: %v", err)
		}
	})
	t.Run("a bucket delete the store refuses keeps the mark and answers Precondition", func(t *testing.T) {
		k, _ := newKeeper(t)
		real := tg.Open(t)
		s := &failing{Store: real, err: fmt.Errorf("%w: BucketNotEmpty (injected: object versions remain)", fault.Conflict), failBucketDeletes: 1}
		b := name("conf-refused")
		if _, err := k.Ensure(ctx, s, ref(b), bucket.Owner{}); err != nil {
			t.Fatal(err)
		}
		if err := s.PutObject(ctx, b, "data", []byte("x")); err != nil {
			t.Fatal(err)
		}
		err := k.Purge(ctx, s, ref(b), bucket.PurgeOptions{})
		if !errors.Is(err, fault.Precondition) || !strings.Contains(err.Error(), "refused deleting bucket") || !strings.Contains(err.Error(), "BucketNotEmpty") {
			t.Fatalf("Purge with the bucket delete refused = %v, want fault.Precondition naming the refusal", err)
		}
		if st, state := status(t, k, real, b); st != bucket.Genuine || state != bucket.StateDeleting {
			t.Fatalf("after a refused bucket delete: mark %v state %q, want the genuine mark back", st, state)
		}
		if err := k.Purge(ctx, real, ref(b), bucket.PurgeOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := real.HeadBucket(ctx, b); !errors.Is(err, fault.NotFound) {
			t.Fatalf("bucket after the retried purge: %v", err)
		}
	})
	t.Run("a volume record found after the deleting mark stops the purge", func(t *testing.T) {
		s := tg.Open(t)
		k, mk := newKeeper(t)
		b := name("conf-inuse")
		if _, err := k.Ensure(ctx, s, ref(b), bucket.Owner{}); err != nil {
			t.Fatal(err)
		}
		if err := bucket.PutRecord(ctx, s, b, "h1", bucket.Record{Name: "pvc-x"}); err != nil {
			t.Fatal(err)
		}
		if err := k.Purge(ctx, s, ref(b), bucket.PurgeOptions{IfUnused: true}); !errors.Is(err, bucket.ErrInUse) {
			t.Fatalf("Purge(IfUnused) of a bucket with a record = %v, want ErrInUse", err)
		}
		if st, state := status(t, k, s, b); st != bucket.Genuine || state != "" {
			t.Fatalf("after the stopped purge: mark %v state %q, want genuine, in use", st, state)
		}
		if r, err := bucket.GetRecord(ctx, s, b, "h1"); err != nil || r == nil {
			t.Fatalf("record after the stopped purge: %v %v", r, err)
		}
		// The record of the volume being deleted is no use; another is.
		if err := bucket.PutRecord(ctx, s, b, "h2", bucket.Record{Name: "pvc-y"}); err != nil {
			t.Fatal(err)
		}
		if err := k.Purge(ctx, s, ref(b), bucket.PurgeOptions{IfUnused: true, Deleting: "h1"}); !errors.Is(err, bucket.ErrInUse) {
			t.Fatalf("Purge(IfUnused) deleting h1 of a bucket with records h1 and h2 = %v, want ErrInUse", err)
		}
		// A mark left saying deleting with records in the bucket (a
		// restore that failed): nothing is purged and the mark stays.
		if err := s.PutObject(ctx, b, bucket.OwnerKey, mk.Sign(ref(b), bucket.Mark{State: bucket.StateDeleting})); err != nil {
			t.Fatal(err)
		}
		if err := s.PutObject(ctx, b, "data", []byte("x")); err != nil {
			t.Fatal(err)
		}
		if err := k.Purge(ctx, s, ref(b), bucket.PurgeOptions{IfUnused: true, Deleting: "h1"}); !errors.Is(err, bucket.ErrInUse) {
			t.Fatalf("Purge(IfUnused) of a bucket marked deleting with records = %v, want ErrInUse", err)
		}
		if _, err := s.GetObject(ctx, b, "data"); err != nil {
			t.Fatalf("data after a purge stopped by records under a deleting mark: %v", err)
		}
		if st, state := status(t, k, s, b); st != bucket.Genuine || state != bucket.StateDeleting {
			t.Fatalf("a deleting mark this purge did not set: now %v %q, want it left", st, state)
		}
		if err := bucket.DeleteRecord(ctx, s, b, "h2"); err != nil {
			t.Fatal(err)
		}
		// The deleting volume's record goes last, before the mark: a
		// caller interrupted earlier finds it on its retry.
		seen := &deletesSeen{Store: s}
		if err := k.Purge(ctx, seen, ref(b), bucket.PurgeOptions{IfUnused: true, Deleting: "h1"}); err != nil {
			t.Fatalf("Purge(IfUnused) deleting h1 of a bucket with record h1 alone = %v", err)
		}
		own := bucket.MetaDir + "/volumes/h1.json"
		if n := len(seen.calls); n < 3 || !slices.Equal(seen.calls[n-2], []string{own}) || !slices.Equal(seen.calls[n-1], []string{bucket.OwnerKey}) || slices.Contains(slices.Concat(seen.calls[:n-2]...), own) {
			t.Fatalf("deletes of the purge: %q; want the objects, then %s alone, then the mark", seen.calls, own)
		}
		if err := s.HeadBucket(ctx, b); !errors.Is(err, fault.NotFound) {
			t.Fatalf("bucket after the purge deleting its last volume: %v", err)
		}
	})
	t.Run("a bucket without a genuine mark is never deleted", func(t *testing.T) {
		s := tg.Open(t)
		k, _ := newKeeper(t)
		_, otherKey := newKeeper(t)
		mine := name("conf-mine")
		if _, err := k.Ensure(ctx, s, ref(mine), bucket.Owner{}); err != nil {
			t.Fatal(err)
		}
		genuine, err := s.GetObject(ctx, mine, bucket.OwnerKey)
		if err != nil {
			t.Fatal(err)
		}
		marks := map[string]func(b string) []byte{
			"no mark": func(string) []byte { return nil },
			"version 1 mark": func(string) []byte {
				return []byte(`{"driver":"bucket.csi.io","createdAt":"2026-01-01T00:00:00Z","createdBy":"pvc ns/x"}`)
			},
			"copied mark":      func(string) []byte { return genuine },
			"other key's mark": func(b string) []byte { return otherKey.Sign(ref(b), bucket.Mark{}) },
		}
		for what, mark := range marks {
			b := name("conf-foreign")
			data := mark(b)
			if err := s.CreateBucket(ctx, b); err != nil {
				t.Fatal(err)
			}
			if err := s.PutObject(ctx, b, "data/keep.txt", []byte("keep")); err != nil {
				t.Fatal(err)
			}
			if data != nil {
				if err := s.PutObject(ctx, b, bucket.OwnerKey, data); err != nil {
					t.Fatal(err)
				}
			}
			if owned, err := k.Ensure(ctx, s, ref(b), bucket.Owner{}); err != nil || owned {
				t.Fatalf("%s: Ensure of a foreign bucket: owned=%v err=%v", what, owned, err)
			}
			if err := k.Purge(ctx, s, ref(b), bucket.PurgeOptions{}); !errors.Is(err, fault.Precondition) {
				t.Fatalf("%s: Purge = %v, want fault.Precondition", what, err)
			}
			if got, err := s.GetObject(ctx, b, "data/keep.txt"); err != nil || string(got) != "keep" {
				t.Fatalf("%s: foreign object after refused purge: %q %v", what, got, err)
			}
		}
	})
	t.Run("marked bucket is deleted with its objects", func(t *testing.T) {
		s := tg.Open(t)
		k, _ := newKeeper(t)
		b := name("conf-purge")
		if _, err := k.Ensure(ctx, s, ref(b), bucket.Owner{}); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < tg.Objects; i++ {
			if err := s.PutObject(ctx, b, fmt.Sprintf("o/%05d", i), []byte{byte(i)}); err != nil {
				t.Fatal(err)
			}
		}
		deleted := 0
		if err := k.Purge(ctx, s, ref(b), bucket.PurgeOptions{Progress: func(n int) { deleted = n }}); err != nil {
			t.Fatal(err)
		}
		if deleted != tg.Objects {
			t.Errorf("purge reported %d deleted, want %d", deleted, tg.Objects)
		}
		if err := s.HeadBucket(ctx, b); !errors.Is(err, fault.NotFound) {
			t.Fatalf("HeadBucket after purge = %v, want fault.NotFound", err)
		}
		if err := k.Purge(ctx, s, ref(b), bucket.PurgeOptions{}); err != nil {
			t.Fatalf("second purge = %v, want nil (idempotent)", err)
		}
	})
	t.Run("objects", func(t *testing.T) {
		s := tg.Open(t)
		b := name("conf-objects")
		if err := s.CreateBucket(ctx, b); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"a/1", "a/2", "b/1"} {
			if err := s.PutObject(ctx, b, k, []byte(k)); err != nil {
				t.Fatal(err)
			}
		}
		var keys []string
		if err := s.List(ctx, b, "a/", 0, func(o store.Object) error { keys = append(keys, o.Key); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(keys) != 2 || keys[0] != "a/1" || keys[1] != "a/2" {
			t.Fatalf("List a/ = %v", keys)
		}
		n := 0
		if err := s.List(ctx, b, "", 1, func(store.Object) error { n++; return nil }); err != nil || n != 1 {
			t.Fatalf("List with limit 1 gave %d, %v", n, err)
		}
		if err := s.DeleteObjects(ctx, b, []string{"a/1", "missing"}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetObject(ctx, b, "a/1"); !errors.Is(err, fault.NotFound) {
			t.Fatalf("GetObject of a deleted object = %v, want fault.NotFound", err)
		}
	})
	t.Run("missing bucket", func(t *testing.T) {
		s := tg.Open(t)
		b := name("conf-missing")
		if err := s.HeadBucket(ctx, b); !errors.Is(err, fault.NotFound) {
			t.Fatalf("HeadBucket = %v, want fault.NotFound", err)
		}
		if _, err := s.GetObject(ctx, b, "x"); !errors.Is(err, fault.NotFound) {
			t.Fatalf("GetObject = %v, want fault.NotFound", err)
		}
		if err := s.DeleteBucket(ctx, b); err != nil {
			t.Fatalf("DeleteBucket of a missing bucket = %v, want nil", err)
		}
	})
	t.Run("a closed store keeps no connection", func(t *testing.T) {
		// Every CSI call opens a Store and closes it; an SDK client's pool
		// would otherwise keep a connection per call until its idle
		// timeout, and a busy controller would run out of descriptors.
		b := name("conf-close")
		if err := tg.Open(t).CreateBucket(ctx, b); err != nil {
			t.Fatal(err)
		}
		const calls = 20
		before := openFiles(t)
		for range calls {
			s := tg.Open(t)
			if err := s.HeadBucket(ctx, b); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
		}
		if after := openFiles(t); after > before+2 {
			t.Fatalf("%d opened and closed stores left %d descriptors open (%d before, %d after)", calls, after-before, before, after)
		}
		if err := tg.Open(t).DeleteBucket(ctx, b); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("wrong credentials", func(t *testing.T) {
		s := tg.OpenWrong(t)
		if _, err := s.ListBuckets(ctx); !errors.Is(err, fault.Denied) {
			t.Fatalf("ListBuckets with wrong credentials = %v, want fault.Denied", err)
		}
		if err := s.CreateBucket(ctx, name("conf-denied")); !errors.Is(err, fault.Denied) {
			t.Fatalf("CreateBucket with wrong credentials = %v, want fault.Denied", err)
		}
	})
}

// openFiles counts the process's open file descriptors.
func openFiles(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// deletesSeen records the keys of each DeleteObjects call.
type deletesSeen struct {
	store.Store
	calls [][]string
}

func (d *deletesSeen) DeleteObjects(ctx context.Context, b string, keys []string) error {
	d.calls = append(d.calls, slices.Clone(keys))
	return d.Store.DeleteObjects(ctx, b, keys)
}
