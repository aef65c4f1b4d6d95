package bucket

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/store"
	"github.com/bucket-csi/bucket-csi/pkg/store/memstore"
)

// racingStore is a store in which the bucket appears between Ensure's
// HeadBucket and its CreateBucket: the first HeadBucket answers NotFound,
// CreateBucket answers conflict (with conflictErr), and from then on the
// bucket (created by whoever) is there and lets the driver in.
type racingStore struct {
	store.Store
	heads       int
	conflictErr error
}

func (r *racingStore) HeadBucket(ctx context.Context, b string) error {
	if r.heads++; r.heads == 1 {
		return fmt.Errorf("%w: bucket %q does not exist", fault.NotFound, b)
	}
	return r.Store.HeadBucket(ctx, b)
}

func (r *racingStore) CreateBucket(context.Context, string) error { return r.conflictErr }

// TestEnsureRace: a bucket created by another account between Ensure's
// check and its create (S3's BucketAlreadyExists) is refused and never
// marked, even when its owner lets the driver in; one created meanwhile by
// the driver's own account (BucketAlreadyOwnedByYou: another call of ours)
// is marked, as a bucket this call created.
func TestEnsureRace(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		conflict error
		owned    bool
	}{
		{"another account", fmt.Errorf("%w: bucket exists, %w", fault.Conflict, store.TakenElsewhere), false},
		{"our own account", fmt.Errorf("%w: bucket exists", fault.Conflict), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := memstore.New("key")
			other := srv.Open("key")
			defer other.Close()
			if err := other.CreateBucket(ctx, "bucket-csi-pvc-1"); err != nil {
				t.Fatal(err)
			}
			m, err := NewMarker(NewKey())
			if err != nil {
				t.Fatal(err)
			}
			k := NewKeeper(m, nil)
			ref := Ref{Store: "s3", Bucket: "bucket-csi-pvc-1"}
			owned, err := k.Ensure(ctx, &racingStore{Store: srv.Open("key"), conflictErr: tc.conflict}, ref, Owner{CreatedBy: "pvc victim/data"})
			if owned != tc.owned {
				t.Fatalf("owned = %v (err %v), want %v", owned, err, tc.owned)
			}
			f, rerr := k.Read(ctx, other, ref)
			if rerr != nil {
				t.Fatal(rerr)
			}
			if tc.owned {
				if err != nil || f.Status != Genuine {
					t.Fatalf("Ensure = %v, mark %v; want the bucket marked", err, f.Status)
				}
				return
			}
			if !errors.Is(err, fault.Conflict) {
				t.Fatalf("Ensure = %v, want fault.Conflict", err)
			}
			if f.Status != Unmarked {
				t.Fatalf("the other account's bucket carries a mark (status %v)", f.Status)
			}
			if _, noted := k.journal.noted(ref); noted {
				t.Fatal("the other account's bucket is still in the journal of buckets this process created")
			}
		})
	}
}

// listingStore is a store whose ListBuckets shows no bucket named hide
// (another account's bucket, which its owner lets the driver into), or
// fails with listErr; it shows every bucket as created age earlier.
type listingStore struct {
	store.Store
	hide    string
	listErr error
	age     time.Duration
}

func (l *listingStore) ListBuckets(ctx context.Context) ([]store.Bucket, error) {
	if l.listErr != nil {
		return nil, l.listErr
	}
	all, err := l.Store.ListBuckets(ctx)
	var out []store.Bucket
	for _, b := range all {
		if b.Name != l.hide {
			b.Created = b.Created.Add(-l.age)
			out = append(out, b)
		}
	}
	return out, err
}

// scopedStore is a listingStore of a store.AccountScoped kind.
type scopedStore struct{ *listingStore }

func (scopedStore) AccountScoped() bool { return true }

// TestEnsureRefusesAnotherAccountsBucket: where bucket names are shared by
// every account, an existing bucket the credentials' own listing lacks is
// refused (fault.Precondition) whatever mark it carries, and nothing is
// written into it; a listing that fails refuses too, unless the store was
// only unavailable (retried); an account-scoped store's bucket and a
// bucket of the account's own listing are used as before.
func TestEnsureRefusesAnotherAccountsBucket(t *testing.T) {
	ctx := context.Background()
	m, err := NewMarker(NewKey())
	if err != nil {
		t.Fatal(err)
	}
	const b = "bucket-csi-pvc-2"
	ref := Ref{Store: "s3", Bucket: b}
	for _, tc := range []struct {
		name    string
		mark    []byte
		open    func(s store.Store) store.Store
		want    error // nil: used, not owned
		owned   bool
		message string
	}{
		{name: "unmarked", open: func(s store.Store) store.Store { return &listingStore{Store: s, hide: b} }, want: fault.Precondition, message: "it is someone else's"},
		{name: "junk mark", mark: []byte(`{"driver":"bucket.csi.io"}`), open: func(s store.Store) store.Store { return &listingStore{Store: s, hide: b} }, want: fault.Precondition, message: "it is someone else's"},
		{name: "genuine mark copied", mark: m.Sign(ref, Mark{CreatedBy: "pvc ns/old"}), open: func(s store.Store) store.Store { return &listingStore{Store: s, hide: b} }, want: fault.Precondition, message: "it is someone else's"},
		{name: "listing denied", open: func(s store.Store) store.Store {
			return &listingStore{Store: s, listErr: fmt.Errorf("%w: listing buckets: AccessDenied", fault.Denied)}
		}, want: fault.Precondition, message: "s3:ListAllMyBuckets"},
		{name: "listing unavailable", open: func(s store.Store) store.Store {
			return &listingStore{Store: s, listErr: fmt.Errorf("%w: listing buckets: timeout", fault.Unavailable)}
		}, want: fault.Unavailable},
		{name: "account-scoped store", open: func(s store.Store) store.Store { return scopedStore{&listingStore{Store: s, hide: b}} }},
		{name: "account-scoped, genuine mark", mark: m.Sign(ref, Mark{CreatedBy: "pvc ns/old"}), open: func(s store.Store) store.Store { return scopedStore{&listingStore{Store: s, hide: b}} }, owned: true},
		{name: "own listing", open: func(s store.Store) store.Store { return &listingStore{Store: s} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := memstore.New("key")
			other := srv.Open("key")
			defer other.Close()
			if err := other.CreateBucket(ctx, b); err != nil {
				t.Fatal(err)
			}
			if err := other.PutObject(ctx, b, "bait.txt", []byte("read me")); err != nil {
				t.Fatal(err)
			}
			if tc.mark != nil {
				if err := other.PutObject(ctx, b, OwnerKey, tc.mark); err != nil {
					t.Fatal(err)
				}
			}
			before := listKeys(t, other, b)
			owned, err := NewKeeper(m, nil).Ensure(ctx, tc.open(srv.Open("key")), ref, Owner{CreatedBy: "pvc victim/data"})
			if tc.want == nil {
				if err != nil || owned != tc.owned {
					t.Fatalf("Ensure = %v, %v; want %v, nil", owned, err, tc.owned)
				}
				return
			}
			if owned || !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("Ensure = %v, %v; want false and %v naming %q", owned, err, tc.want, tc.message)
			}
			if after := listKeys(t, other, b); !slices.Equal(before, after) {
				t.Fatalf("Ensure wrote into the bucket: %v, before %v", after, before)
			}
		})
	}
}

func listKeys(t *testing.T, s store.Store, b string) []string {
	t.Helper()
	var out []string
	if err := s.List(context.Background(), b, "", 0, func(o store.Object) error { out = append(out, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestJournalNoteExpires: an empty unmarked bucket whose create this
// process began more than AdoptWindow ago (the answer lost, no retry since)
// is neither adopted nor used as someone else's, however old the bucket:
// the create may never have happened and the name been taken since by
// someone else of the account, so an admin decides. A note within the
// window still adopts it.
func TestJournalNoteExpires(t *testing.T) {
	ctx := context.Background()
	m, err := NewMarker(NewKey())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		age       time.Duration // of the note
		bucketAge time.Duration
		owned     bool
	}{
		{"within the window", time.Minute, time.Minute, true},
		{"older than the window", AdoptWindow + time.Minute, time.Minute, false},
		{"older than the window, an old bucket", AdoptWindow + time.Minute, 2 * AdoptWindow, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := memstore.New("key")
			s := srv.Open("key")
			defer s.Close()
			ref := Ref{Store: "s3", Bucket: "bucket-csi-pvc-3"}
			if err := s.CreateBucket(ctx, ref.Bucket); err != nil {
				t.Fatal(err)
			}
			k := NewKeeper(m, nil)
			k.journal.pending[ref] = time.Now().Add(-tc.age)
			// Another create since keeps the note.
			k.journal.add(Ref{Store: "s3", Bucket: "bucket-csi-pvc-other"})
			owned, err := k.Ensure(ctx, &listingStore{Store: s, age: tc.bucketAge}, ref, Owner{CreatedBy: "pvc ns/late"})
			if owned != tc.owned {
				t.Fatalf("Ensure = %v, %v; want owned %v", owned, err, tc.owned)
			}
			f, rerr := k.Read(ctx, s, ref)
			if rerr != nil {
				t.Fatal(rerr)
			}
			if (f.Status == Genuine) != tc.owned {
				t.Fatalf("mark status %v after Ensure (%v)", f.Status, err)
			}
			if !tc.owned && (!errors.Is(err, fault.Precondition) || !strings.Contains(err.Error(), "storage remark")) {
				t.Fatalf("Ensure = %v, want the empty unmarked bucket refused for an admin to decide (storage remark)", err)
			}
			// A retry gets the same answer: the refusal keeps the note.
			again, err := k.Ensure(ctx, &listingStore{Store: s, age: tc.bucketAge}, ref, Owner{CreatedBy: "pvc ns/late"})
			if again != tc.owned || (!tc.owned && !errors.Is(err, fault.Precondition)) {
				t.Fatalf("Ensure again = %v, %v; want the first answer (owned %v, refused when not)", again, err, tc.owned)
			}
		})
	}
}
