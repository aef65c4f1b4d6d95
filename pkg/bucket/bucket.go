// Package bucket holds the store-independent rules for buckets the driver
// manages: how the driver marks a bucket as its own, how it keeps one small
// record per volume inside such a bucket, and how it deletes only what it
// marked.
//
// The mark is a marker object (OwnerKey) rather than bucket tags or labels,
// because it is the one form every store and every emulator keeps (the GCS
// emulator drops bucket labels); one mechanism serves all stores. Everything
// the driver writes lives under MetaDir, which mounts and copies hide.
package bucket

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/store"
)

// Keys of the driver's own objects inside a managed bucket.
const (
	MetaDir    = ".bucket-csi"
	OwnerKey   = MetaDir + "/owner.json"
	recordsDir = MetaDir + "/volumes/"
)

// DriverMark is the value of Owner.Driver on buckets this driver created.
const DriverMark = "bucket.csi.io"

// Owner is the content of the marker object.
type Owner struct {
	Driver    string    `json:"driver"`
	CreatedAt time.Time `json:"createdAt"`
	// CreatedBy says who asked: "pvc <namespace>/<name>", "volume <name>" or
	// "cli <command>".
	CreatedBy string `json:"createdBy"`
}

// Record is what the driver remembers about one volume in a managed bucket.
type Record struct {
	Name          string    `json:"name"`
	VolumeID      string    `json:"volumeID"`
	CapacityBytes int64     `json:"capacityBytes"`
	CreatedAt     time.Time `json:"createdAt"`
}

// Ensure makes bucket exist. A missing bucket is created and marked with
// owner; owned reports whether the bucket carries the driver's mark (newly
// or from before). An existing unmarked bucket is returned with owned=false:
// it may be used, but is never deleted; the one exception is a bucket left
// by a crash between creation and marking (see adoptOrphan), which a retry
// marks and so finishes.
func Ensure(ctx context.Context, s store.Store, bucket string, owner Owner) (owned bool, err error) {
	err = s.HeadBucket(ctx, bucket)
	if errors.Is(err, fault.NotFound) {
		err = s.CreateBucket(ctx, bucket)
		if err == nil || errors.Is(err, fault.Conflict) {
			// Conflict: created concurrently (by us or someone else); the
			// mark below decides whose it is.
			if err == nil {
				return true, writeOwner(ctx, s, bucket, owner)
			}
			if herr := s.HeadBucket(ctx, bucket); herr != nil {
				return false, fmt.Errorf("%w: bucket %q is taken by another account", fault.Conflict, bucket)
			}
		} else {
			return false, err
		}
	} else if err != nil {
		return false, err
	}
	o, err := ReadOwner(ctx, s, bucket)
	if err != nil || o != nil {
		return o != nil, err
	}
	return adoptOrphan(ctx, s, bucket, owner)
}

// AdoptWindow is how recent an unmarked, empty bucket must be for Ensure to
// take it as one the driver created and then crashed before marking.
const AdoptWindow = 10 * time.Minute

// adoptOrphan marks bucket as the driver's when it looks exactly like what
// a crash between CreateBucket and the mark leaves: no objects at all and
// created within AdoptWindow by the same credentials. Anything else stays
// foreign (used, never deleted).
func adoptOrphan(ctx context.Context, s store.Store, bucket string, owner Owner) (bool, error) {
	empty := true
	if err := s.List(ctx, bucket, "", 1, func(store.Object) error { empty = false; return nil }); err != nil || !empty {
		return false, err
	}
	all, err := s.ListBuckets(ctx)
	if err != nil {
		return false, nil // cannot tell: stay on the safe side
	}
	for _, b := range all {
		if b.Name == bucket && !b.Created.IsZero() && time.Since(b.Created) < AdoptWindow {
			return true, writeOwner(ctx, s, bucket, owner)
		}
	}
	return false, nil
}

func writeOwner(ctx context.Context, s store.Store, bucket string, owner Owner) error {
	owner.Driver = DriverMark
	if owner.CreatedAt.IsZero() {
		owner.CreatedAt = time.Now().UTC()
	}
	data, _ := json.Marshal(owner)
	if err := s.PutObject(ctx, bucket, OwnerKey, data); err != nil {
		return fmt.Errorf("marking new bucket %q as the driver's: %w", bucket, err)
	}
	return nil
}

// ReadOwner returns the bucket's mark, or nil when it carries none.
func ReadOwner(ctx context.Context, s store.Store, bucket string) (*Owner, error) {
	data, err := s.GetObject(ctx, bucket, OwnerKey)
	if errors.Is(err, fault.NotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var o Owner
	if json.Unmarshal(data, &o) != nil || o.Driver != DriverMark {
		return nil, nil
	}
	return &o, nil
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
	found := false
	err := s.List(ctx, bucket, recordsDir, 1, func(store.Object) error { found = true; return nil })
	return found, err
}

// Purge deletes every object of a marked bucket and then the bucket. It
// refuses (fault.Precondition) when the bucket carries no mark. The mark is
// deleted last, so an interrupted purge is finished by calling Purge again.
// progress, if set, is called with the number of objects deleted so far.
func Purge(ctx context.Context, s store.Store, bucket string, progress func(deleted int)) error {
	o, err := ReadOwner(ctx, s, bucket)
	if errors.Is(err, fault.NotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if o == nil {
		if herr := s.HeadBucket(ctx, bucket); errors.Is(herr, fault.NotFound) {
			return nil
		}
		return fmt.Errorf("%w: bucket %q does not carry the driver's mark (%s); it was not created by bucket-csi and is never deleted", fault.Precondition, bucket, OwnerKey)
	}
	deleted := 0
	for {
		var batch []string
		err := s.List(ctx, bucket, "", 1000, func(ob store.Object) error {
			if ob.Key != OwnerKey {
				batch = append(batch, ob.Key)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(batch) == 0 {
			break
		}
		if err := s.DeleteObjects(ctx, bucket, batch); err != nil {
			return err
		}
		deleted += len(batch)
		if progress != nil {
			progress(deleted)
		}
	}
	if err := s.DeleteObjects(ctx, bucket, []string{OwnerKey}); err != nil {
		return err
	}
	return s.DeleteBucket(ctx, bucket)
}
