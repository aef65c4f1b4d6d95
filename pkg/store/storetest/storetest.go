// Package storetest is the conformance suite every store.Store runs: the
// same tests, through the same ownership rules (package bucket), against a
// real server or emulator of each store.
package storetest

import (
	"context"
	"errors"
	"fmt"
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

// Run runs the suite.
func Run(t *testing.T, tg Target) {
	ctx := context.Background()
	t.Run("create, mark, reuse, list", func(t *testing.T) {
		s := tg.Open(t)
		b := name("conf-create")
		owned, err := bucket.Ensure(ctx, s, b, bucket.Owner{CreatedBy: "pvc ns/claim"})
		if err != nil || !owned {
			t.Fatalf("Ensure new bucket: owned=%v err=%v", owned, err)
		}
		owned, err = bucket.Ensure(ctx, s, b, bucket.Owner{CreatedBy: "pvc ns/other"})
		if err != nil || !owned {
			t.Fatalf("Ensure existing marked bucket: owned=%v err=%v", owned, err)
		}
		o, err := bucket.ReadOwner(ctx, s, b)
		if err != nil || o == nil || o.CreatedBy != "pvc ns/claim" {
			t.Fatalf("owner mark = %+v, %v; want the first creator", o, err)
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
	t.Run("a crash between create and mark is finished by the retry", func(t *testing.T) {
		s := tg.Open(t)
		b := name("conf-orphan")
		if err := s.CreateBucket(ctx, b); err != nil { // created, then "crashed"
			t.Fatal(err)
		}
		owned, err := bucket.Ensure(ctx, s, b, bucket.Owner{CreatedBy: "pvc ns/retry"})
		if err != nil || !owned {
			t.Fatalf("retry after a crash before the mark: owned=%v err=%v", owned, err)
		}
		if err := bucket.Purge(ctx, s, b, nil); err != nil {
			t.Fatalf("the adopted bucket cannot be deleted: %v", err)
		}
	})
	t.Run("an interrupted purge is finished by the retry", func(t *testing.T) {
		s := tg.Open(t)
		b := name("conf-interrupt")
		if _, err := bucket.Ensure(ctx, s, b, bucket.Owner{}); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 30; i++ {
			if err := s.PutObject(ctx, b, fmt.Sprintf("o/%03d", i), []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.DeleteObjects(ctx, b, []string{"o/000", "o/001"}); err != nil { // a purge that died early
			t.Fatal(err)
		}
		if owned, err := bucket.Ensure(ctx, s, b, bucket.Owner{}); err != nil || !owned {
			t.Fatalf("half-purged bucket lost its mark: owned=%v err=%v", owned, err)
		}
		if err := bucket.Purge(ctx, s, b, nil); err != nil {
			t.Fatal(err)
		}
		if err := s.HeadBucket(ctx, b); !errors.Is(err, fault.NotFound) {
			t.Fatalf("bucket after the resumed purge: %v", err)
		}
	})
	t.Run("unmarked bucket is never deleted", func(t *testing.T) {
		s := tg.Open(t)
		b := name("conf-foreign")
		if err := s.CreateBucket(ctx, b); err != nil {
			t.Fatal(err)
		}
		if err := s.PutObject(ctx, b, "data/keep.txt", []byte("keep")); err != nil {
			t.Fatal(err)
		}
		if owned, err := bucket.Ensure(ctx, s, b, bucket.Owner{}); err != nil || owned {
			t.Fatalf("Ensure of a foreign bucket: owned=%v err=%v", owned, err)
		}
		if err := bucket.Purge(ctx, s, b, nil); !errors.Is(err, fault.Precondition) {
			t.Fatalf("Purge of an unmarked bucket = %v, want fault.Precondition", err)
		}
		if got, err := s.GetObject(ctx, b, "data/keep.txt"); err != nil || string(got) != "keep" {
			t.Fatalf("foreign object after refused purge: %q %v", got, err)
		}
	})
	t.Run("marked bucket is deleted with its objects", func(t *testing.T) {
		s := tg.Open(t)
		b := name("conf-purge")
		if _, err := bucket.Ensure(ctx, s, b, bucket.Owner{}); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < tg.Objects; i++ {
			if err := s.PutObject(ctx, b, fmt.Sprintf("o/%05d", i), []byte{byte(i)}); err != nil {
				t.Fatal(err)
			}
		}
		deleted := 0
		if err := bucket.Purge(ctx, s, b, func(n int) { deleted = n }); err != nil {
			t.Fatal(err)
		}
		if deleted != tg.Objects {
			t.Errorf("purge reported %d deleted, want %d", deleted, tg.Objects)
		}
		if err := s.HeadBucket(ctx, b); !errors.Is(err, fault.NotFound) {
			t.Fatalf("HeadBucket after purge = %v, want fault.NotFound", err)
		}
		if err := bucket.Purge(ctx, s, b, nil); err != nil {
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
