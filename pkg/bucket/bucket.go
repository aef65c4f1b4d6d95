// Package bucket holds the store-independent rules for buckets the driver
// manages: how the driver marks a bucket as its own, how it keeps one small
// record per volume inside such a bucket, and how it deletes only what it
// marked.
//
// The mark is a marker object (OwnerKey) rather than bucket tags or labels,
// because it is the one form every store and every emulator keeps (the GCS
// emulator drops bucket labels); one mechanism serves all stores. Since
// anyone who can write the bucket can write that object, the mark is
// signed with a key only the driver holds (mark.go), and only a genuine
// mark makes a bucket the driver's. Everything the driver writes lives
// under MetaDir, which mounts and copies hide.
package bucket

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/store"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// Keys of the driver's own objects inside a managed bucket.
const (
	MetaDir    = ".bucket-csi"
	OwnerKey   = MetaDir + "/owner.json"
	recordsDir = MetaDir + "/volumes/"
)

// IsMeta reports whether key (from the bucket root) is the driver's own:
// MetaDir or anything under it. Mounts and copies of a bucket's root hide
// exactly these keys.
func IsMeta(key string) bool {
	return key == MetaDir || strings.HasPrefix(key, MetaDir+"/")
}

// DriverMark is the value of Owner.Driver on buckets this driver created.
const DriverMark = volume.DriverName

// Owner is who asks for a new bucket, written into its mark.
type Owner struct {
	// CreatedBy says who asked: "pvc <namespace>/<name>", "volume <name>" or
	// "cli <command>".
	CreatedBy string
	// CreatedAt is the creation time to record; zero means now.
	CreatedAt time.Time
}

// Record is what the driver remembers about one volume in a managed bucket.
type Record struct {
	Name          string    `json:"name"`
	VolumeID      string    `json:"volumeID"`
	CapacityBytes int64     `json:"capacityBytes"`
	CreatedAt     time.Time `json:"createdAt"`
}

// Status is what a bucket's mark object says about ownership.
type Status int

// Mark statuses.
const (
	// Unmarked: no mark object.
	Unmarked Status = iota
	// Genuine: a mark this key signed for this bucket; the bucket is the
	// driver's.
	Genuine
	// Unverified: a mark object that fails verification (forged, copied,
	// edited, another key, an earlier unsigned version). The bucket is
	// treated as foreign until an admin re-marks it.
	Unverified
)

// Found is the result of reading a bucket's mark.
type Found struct {
	Status Status
	// Mark is the verified mark (Genuine only).
	Mark *Mark
	// Reason says why a mark is Unverified.
	Reason string
	// Raw is the mark object's content (Genuine and Unverified).
	Raw []byte
}

// Keeper applies the ownership rules with one key and one journal: it
// marks what it creates, trusts only genuine marks, and deletes only
// buckets that carry one. Build it with NewKeeper; safe for concurrent use.
type Keeper struct {
	marker  *Marker
	journal *Journal
}

// NewKeeper returns a Keeper signing with m and remembering unmarked
// creations in j (a new journal when nil).
func NewKeeper(m *Marker, j *Journal) *Keeper {
	if j == nil {
		j = NewJournal()
	}
	return &Keeper{marker: m, journal: j}
}

// Read reads and verifies the mark of ref. A missing bucket reads as
// Unmarked.
func (k *Keeper) Read(ctx context.Context, s store.Store, ref Ref) (Found, error) {
	data, err := s.GetObject(ctx, ref.Bucket, OwnerKey)
	if errors.Is(err, fault.NotFound) {
		return Found{Status: Unmarked}, nil
	}
	if err != nil {
		return Found{}, err
	}
	m, err := k.marker.Verify(ref, data)
	if err != nil {
		return Found{Status: Unverified, Reason: err.Error(), Raw: data}, nil
	}
	return Found{Status: Genuine, Mark: m, Raw: data}, nil
}

// AdoptWindow is how recent an empty unmarked bucket must be for Ensure to
// refuse it as a probable leftover of a crash (rather than use it as
// foreign), and how long the journal's note of a create is trusted to
// adopt one. It never makes a bucket of someone else the driver's.
const AdoptWindow = 10 * time.Minute

// Ensure makes ref's bucket exist. A missing bucket is created and
// marked; owned reports whether the bucket carries a genuine mark (newly
// or from before). An existing bucket without a genuine mark is returned
// with owned=false: it may be used, but is never deleted. The exceptions:
//   - a bucket this process created and has not marked yet (in the
//     journal: a crash of the mark write, or a lost answer) is marked by
//     the retry;
//   - an empty unmarked bucket created within AdoptWindow that is not in
//     the journal (the process restarted between create and mark, or it
//     is someone else's), or whose note in the journal is older than
//     AdoptWindow, answers fault.Precondition: an admin decides, with
//     `bucket-csi storage remark`;
//   - a bucket whose purge has started (StateDeleting) answers
//     fault.Precondition: it is never silently reused half-deleted;
//   - where bucket names are shared by every account (S3, IBM COS,
//     Nebius, GCS: not store.AccountScoped), an existing bucket that the
//     store's ListBuckets (the credentials' account; IBM's service
//     instance; GCS's --gcs-project) does not show is someone else's,
//     made by whoever took the name first, and may let the driver in on
//     purpose: it answers fault.Precondition whatever mark it carries (a
//     copied genuine mark too), before anything is read from it or
//     written into it. So does one whose owner cannot be told (the
//     listing refused; fault.Unavailable passes as is). Such a bucket is
//     mounted only by `source`, an explicit choice.
func (k *Keeper) Ensure(ctx context.Context, s store.Store, ref Ref, owner Owner) (owned bool, err error) {
	err = s.HeadBucket(ctx, ref.Bucket)
	if errors.Is(err, fault.NotFound) {
		k.journal.add(ref)
		err = s.CreateBucket(ctx, ref.Bucket)
		switch {
		case err == nil:
			return true, k.markNew(ctx, s, ref, owner)
		case errors.Is(err, store.TakenElsewhere):
			// Another account created it since the HeadBucket: never
			// ours, even if its owner lets us in (its mark would be our
			// signature on someone else's bucket).
			k.journal.done(ref)
			return false, fmt.Errorf("%w: bucket %q was just created by another account", fault.Conflict, ref.Bucket)
		case errors.Is(err, fault.Conflict):
			// Created concurrently by our own account (another call of
			// ours, or a store that cannot say whose it is); the mark
			// below decides whose it is.
			if herr := s.HeadBucket(ctx, ref.Bucket); herr != nil {
				k.journal.done(ref)
				return false, fmt.Errorf("%w: bucket %q is taken by another account", fault.Conflict, ref.Bucket)
			}
		case errors.Is(err, fault.Invalid), errors.Is(err, fault.Denied), errors.Is(err, fault.Precondition):
			k.journal.done(ref) // refused: certainly not created
			return false, err
		default:
			return false, err // may have been created: the journal keeps it
		}
	} else if err != nil {
		return false, err
	}
	listed, err := ownListing(ctx, s, ref.Bucket)
	if err != nil {
		return false, err
	}
	f, err := k.Read(ctx, s, ref)
	if err != nil {
		return false, err
	}
	switch f.Status {
	case Genuine:
		k.journal.done(ref)
		if f.Mark.State == StateDeleting {
			return false, deletingError(ref)
		}
		return true, nil
	case Unverified:
		k.journal.done(ref)
		return false, nil
	}
	empty, err := isEmpty(ctx, s, ref.Bucket)
	if err != nil {
		return false, err
	}
	fresh, noted := k.journal.noted(ref)
	if empty && fresh {
		return true, k.markNew(ctx, s, ref, owner)
	}
	// An old note is no proof either way: an admin decides. The note
	// stays, so every retry gets this answer until then (Genuine above
	// drops it once the bucket is marked again).
	if empty && (noted || recentlyCreated(listed)) {
		return false, fmt.Errorf("%w: bucket %q exists, is empty, carries no bucket-csi mark and was created minutes ago (or by a create of this controller whose answer was lost long ago): "+
			"if bucket-csi created it and was interrupted before marking it, an admin runs `bucket-csi storage remark %s`; "+
			"if it is someone else's, use it with the `source` parameter instead", fault.Precondition, ref.Bucket, ref.Bucket)
	}
	k.journal.done(ref)
	return false, nil
}

// deletingError is the answer for a bucket whose purge has started.
func deletingError(ref Ref) error {
	return fmt.Errorf("%w: bucket %q is being deleted (a purge started and did not finish; its objects may be partly gone): "+
		"finish it with `bucket-csi storage delete %s` (or the retried DeleteVolume of the volume that started it, while its record remains), then create the volume again", fault.Precondition, ref.Bucket, ref.Bucket)
}

func isEmpty(ctx context.Context, s store.Store, bucket string) (bool, error) {
	empty := true
	err := s.List(ctx, bucket, "", 1, func(store.Object) error { empty = false; return nil })
	return empty, err
}

// ownListing returns bucket's entry in the listing of the credentials'
// own account (zero when the store is store.AccountScoped and the listing
// fails or lacks it). Where names are shared by every account, a bucket
// the listing lacks, or a listing that fails, is fault.Precondition (see
// Ensure); fault.Unavailable passes as is.
func ownListing(ctx context.Context, s store.Store, bucket string) (store.Bucket, error) {
	all, err := s.ListBuckets(ctx)
	if err == nil {
		for _, b := range all {
			if b.Name == bucket {
				return b, nil
			}
		}
	}
	switch {
	case store.IsAccountScoped(s):
		return store.Bucket{}, nil
	case errors.Is(err, fault.Unavailable):
		return store.Bucket{}, err
	case err != nil:
		return store.Bucket{}, fmt.Errorf("%w: bucket %q exists, and whether it is this account's cannot be told: listing the account's buckets failed (%v); "+
			"an existing bucket is used by its name only if it is the account's own, so the credentials must be allowed to list buckets (S3: s3:ListAllMyBuckets; GCS: storage.buckets.list in --gcs-project); "+
			"a bucket of another account is mounted with the `source` parameter", fault.Precondition, bucket, err)
	}
	return store.Bucket{}, fmt.Errorf("%w: bucket %q exists but is not among the buckets of the credentials' own account (on GCS: of --gcs-project; on IBM COS: of the service instance): it is someone else's, of another account, project or service instance (whoever takes a name first owns it on this store, and its owner can let anyone in). "+
		"It is never used by its name; if that bucket is meant, mount it with the `source` parameter", fault.Precondition, bucket)
}

// recentlyCreated reports whether the listing's entry b says its bucket
// was created within AdoptWindow (false when it cannot tell).
func recentlyCreated(b store.Bucket) bool {
	return !b.Created.IsZero() && time.Since(b.Created) < AdoptWindow
}

// markNew writes a new signed mark on a bucket this process created.
func (k *Keeper) markNew(ctx context.Context, s store.Store, ref Ref, owner Owner) error {
	data := k.marker.Sign(ref, Mark{CreatedBy: owner.CreatedBy, CreatedAt: owner.CreatedAt})
	if err := s.PutObject(ctx, ref.Bucket, OwnerKey, data); err != nil {
		return fmt.Errorf("marking new bucket %q as the driver's: %w", ref.Bucket, err)
	}
	k.journal.done(ref)
	return nil
}

// Remark writes a new genuine mark on an existing bucket, replacing
// whatever mark object it has: an admin's decision that the bucket is
// the driver's (`bucket-csi storage remark`). A missing bucket is
// fault.NotFound.
func (k *Keeper) Remark(ctx context.Context, s store.Store, ref Ref, owner Owner) error {
	if err := s.HeadBucket(ctx, ref.Bucket); err != nil {
		return err
	}
	data := k.marker.Sign(ref, Mark{CreatedBy: owner.CreatedBy, CreatedAt: owner.CreatedAt})
	return s.PutObject(ctx, ref.Bucket, OwnerKey, data)
}

// CheckNotDeleting re-reads ref's mark after a volume record was written
// (see Purge): fault.Precondition when the bucket is being deleted or no
// longer carries a genuine mark.
func (k *Keeper) CheckNotDeleting(ctx context.Context, s store.Store, ref Ref) error {
	f, err := k.Read(ctx, s, ref)
	if err != nil {
		return err
	}
	if f.Status != Genuine || f.Mark.State == StateDeleting {
		return deletingError(ref)
	}
	return nil
}

func recordKey(nameHash string) string { return recordsDir + nameHash + ".json" }

// GetRecord returns the volume record, or nil when there is none.
func GetRecord(ctx context.Context, s store.Store, bucket, nameHash string) (*Record, error) {
	data, err := s.GetObject(ctx, bucket, recordKey(nameHash))
	if errors.Is(err, fault.NotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%w: volume record %s in bucket %q is corrupt: %v", fault.Precondition, recordKey(nameHash), bucket, err)
	}
	return &r, nil
}

// PutRecord stores r under nameHash.
func PutRecord(ctx context.Context, s store.Store, bucket, nameHash string, r Record) error {
	data, _ := json.Marshal(r)
	return s.PutObject(ctx, bucket, recordKey(nameHash), data)
}

// DeleteRecord removes a volume record; a missing one is not an error.
func DeleteRecord(ctx context.Context, s store.Store, bucket, nameHash string) error {
	return s.DeleteObjects(ctx, bucket, []string{recordKey(nameHash)})
}

// HasRecords reports whether any volume still refers to bucket.
func HasRecords(ctx context.Context, s store.Store, bucket string) (bool, error) {
	return HasRecordsBut(ctx, s, bucket, "")
}

// HasRecordsBut reports whether a volume other than the one of nameHash
// (none when empty) refers to bucket.
func HasRecordsBut(ctx context.Context, s store.Store, bucket, nameHash string) (bool, error) {
	found := false
	err := s.List(ctx, bucket, recordsDir, 2, func(o store.Object) error {
		found = found || nameHash == "" || o.Key != recordKey(nameHash)
		return nil
	})
	return found, err
}
