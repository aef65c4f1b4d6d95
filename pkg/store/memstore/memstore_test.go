package memstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/store"
	"github.com/bucket-csi/bucket-csi/pkg/store/storetest"
)

// TestConformance runs the whole store conformance suite on the in-memory
// store, through store.Wrap as the driver uses every store: enough objects
// that purges page and the wrapper batches deletes.
func TestConformance(t *testing.T) {
	srv := New("right")
	storetest.Run(t, storetest.Target{
		Open:      func(*testing.T) store.Store { return srv.Open("right") },
		OpenWrong: func(*testing.T) store.Store { return srv.Open("wrong") },
		Objects:   2*store.MaxDeleteBatch + 17,
	})
}

// TestWrapRules: the shared rules hold whatever the store does: size caps
// both ways, a limit the store overruns, one retry after Unavailable and
// none for CreateBucket, batches of at most MaxDeleteBatch.
func TestWrapRules(t *testing.T) {
	ctx := context.Background()
	srv := New("k")
	raw := &client{s: srv, ok: true}
	s := store.Wrap(raw)
	if err := s.CreateBucket(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, store.MaxObjectSize+1)
	if err := s.PutObject(ctx, "b", "big", big); !errors.Is(err, fault.Invalid) {
		t.Fatalf("PutObject over the cap = %v, want fault.Invalid", err)
	}
	if err := raw.PutObject(ctx, "b", "big", big); err != nil { // written by someone else
		t.Fatal(err)
	}
	if _, err := s.GetObject(ctx, "b", "big"); !errors.Is(err, fault.Invalid) {
		t.Fatalf("GetObject over the cap = %v, want fault.Invalid", err)
	}
	if err := s.PutObject(ctx, "b", "max", big[:store.MaxObjectSize]); err != nil {
		t.Fatalf("PutObject at the cap = %v", err)
	}
	over := store.Wrap(overrun{raw})
	n := 0
	if err := over.List(ctx, "b", "", 1, func(store.Object) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("List with limit 1 over a store ignoring it: %d objects, %v", n, err)
	}

	// A listing that fails midway is neither repeated (its objects would
	// be seen twice) nor taken for a complete one.
	n = 0
	if err := store.Wrap(cutOff{raw}).List(ctx, "b", "", 0, func(store.Object) error { n++; return nil }); !errors.Is(err, fault.Unavailable) || n != 1 {
		t.Fatalf("List cut off after one object: %d objects, %v; want 1 and Unavailable", n, err)
	}

	flaky := &flaky{Store: raw, fail: 1}
	fs := store.Wrap(flaky)
	if err := fs.HeadBucket(ctx, "b"); err != nil || flaky.calls != 2 {
		t.Fatalf("HeadBucket after one Unavailable = %v in %d calls, want success in 2", err, flaky.calls)
	}
	flaky.fail, flaky.calls = 5, 0
	if err := fs.HeadBucket(ctx, "b"); !errors.Is(err, fault.Unavailable) || flaky.calls != 2 {
		t.Fatalf("HeadBucket while unavailable = %v in %d calls, want Unavailable after 2", err, flaky.calls)
	}
	flaky.fail, flaky.calls = 1, 0
	if err := fs.CreateBucket(ctx, "c"); !errors.Is(err, fault.Unavailable) || flaky.calls != 1 {
		t.Fatalf("CreateBucket = %v in %d calls, want one call, not retried", err, flaky.calls)
	}
	flaky.fail, flaky.calls = 0, 0
	keys := make([]string, 2*store.MaxDeleteBatch+1)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%05d", i)
	}
	if err := fs.DeleteObjects(ctx, "b", keys); err != nil || flaky.calls != 3 {
		t.Fatalf("DeleteObjects of %d keys = %v in %d calls, want 3 batches", len(keys), err, flaky.calls)
	}
	if err := s.DeleteBucket(ctx, "missing"); err != nil {
		t.Fatalf("DeleteBucket of a missing bucket = %v, want nil", err)
	}
	if err := s.DeleteBucket(ctx, "b"); !errors.Is(err, fault.Conflict) || !strings.Contains(err.Error(), "BucketNotEmpty") {
		t.Fatalf("DeleteBucket of a non-empty bucket = %v, want fault.Conflict", err)
	}
}

// overrun lists every object whatever the limit.
type overrun struct{ *client }

func (o overrun) List(ctx context.Context, b, p string, _ int, fn func(store.Object) error) error {
	return o.client.List(ctx, b, p, 0, fn)
}

// cutOff delivers the first object of a listing, then fails.
type cutOff struct{ *client }

func (c cutOff) List(ctx context.Context, b, p string, _ int, fn func(store.Object) error) error {
	if err := c.client.List(ctx, b, p, 1, fn); err != nil {
		return err
	}
	return fmt.Errorf("%w: connection reset mid-listing", fault.Unavailable)
}

// flaky answers fail calls with fault.Unavailable, then passes them on; it
// counts HeadBucket, CreateBucket and DeleteObjects calls.
type flaky struct {
	store.Store
	fail, calls int
}

func (f *flaky) try() error {
	f.calls++
	if f.fail > 0 {
		f.fail--
		return fmt.Errorf("%w: injected", fault.Unavailable)
	}
	return nil
}

func (f *flaky) HeadBucket(ctx context.Context, b string) error {
	if err := f.try(); err != nil {
		return err
	}
	return f.Store.HeadBucket(ctx, b)
}

func (f *flaky) CreateBucket(ctx context.Context, b string) error {
	if err := f.try(); err != nil {
		return err
	}
	return f.Store.CreateBucket(ctx, b)
}

func (f *flaky) DeleteObjects(ctx context.Context, b string, keys []string) error {
	if err := f.try(); err != nil {
		return err
	}
	return f.Store.DeleteObjects(ctx, b, keys)
}
