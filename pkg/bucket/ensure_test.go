package bucket

import (
	"context"
	"errors"
	"fmt"
	"testing"

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
			if k.journal.has(ref) {
				t.Fatal("the other account's bucket is still in the journal of buckets this process created")
			}
		})
	}
}
