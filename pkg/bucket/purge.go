package bucket

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/store"
)

// ErrInUse is Purge's answer when PurgeOptions.IfUnused is set and a
// volume record appeared: the bucket is left as it was.
var ErrInUse = fmt.Errorf("%w: volumes still use the bucket", fault.Precondition)

// PurgeOptions tune Purge.
type PurgeOptions struct {
	// IfUnused makes Purge stop, restoring the bucket's mark, when a
	// volume record is found once the bucket is marked as being deleted.
	IfUnused bool
	// Deleting is the name hash of the volume whose deletion asks for the
	// purge: with IfUnused its record does not count as a use, and it is
	// deleted last, just before the mark.
	Deleting string
	// Progress, if set, is called with the number of objects deleted so far.
	Progress func(deleted int)
}

// restoreTimeout bounds putting a mark back after a failed delete, which
// runs even when the caller's context has ended.
const restoreTimeout = 30 * time.Second

// Purge deletes every object of ref's bucket and then the bucket. It
// refuses (fault.Precondition) a bucket without a genuine mark; a missing
// bucket is not an error. The order makes every interruption safe:
//
//  1. the mark is re-signed with StateDeleting, so no volume is placed in
//     a half-deleted bucket (Ensure and CheckNotDeleting refuse it);
//  2. with IfUnused, the volume records (but Deleting's) are checked
//     after that write, also when the mark said deleting already: a
//     CreateVolume writes its record and then re-reads the mark, so one
//     of the two always sees the other; a record found answers ErrInUse
//     and restores the mark if this call set it (a failed restore
//     answers its own error, so the caller tries again; the mark then
//     stays deleting, refusing new volumes, and no purge with IfUnused
//     goes on while records remain);
//  3. every object but the mark and Deleting's record is deleted, then
//     that record (so an interrupted caller finds it again and retries),
//     then the mark, then the bucket;
//  4. if the store refuses to delete the bucket (object versions, for
//     one), the mark is put back and the answer is fault.Precondition
//     saying so; a retryable failure puts it back too and is returned as
//     is. The bucket is never left without its mark, except when the
//     process dies between deleting the mark and the bucket (one request).
//
// An interrupted purge is finished by calling Purge again.
func (k *Keeper) Purge(ctx context.Context, s store.Store, ref Ref, opt PurgeOptions) error {
	f, err := k.Read(ctx, s, ref)
	if err != nil {
		return err
	}
	if f.Status != Genuine {
		if herr := s.HeadBucket(ctx, ref.Bucket); errors.Is(herr, fault.NotFound) {
			return nil
		} else if herr != nil {
			return herr
		}
		return fmt.Errorf("%w: bucket %q does not carry a genuine bucket-csi mark (%s); it was not created by bucket-csi and is never deleted", fault.Precondition, ref.Bucket, OwnerKey)
	}
	m := *f.Mark
	deleting := f.Raw
	began := m.State != StateDeleting // by this call
	if began {
		m.State = StateDeleting
		deleting = k.marker.Sign(ref, m)
		if err := s.PutObject(ctx, ref.Bucket, OwnerKey, deleting); err != nil {
			return err
		}
	}
	if opt.IfUnused {
		// Also when the mark said deleting already: a purge that found
		// records and could not put the mark back left it so, and
		// nothing is purged under them. Only the call that set the mark
		// puts it back: one found so may be a half-done purge, never to
		// be reused.
		inUse, err := HasRecordsBut(ctx, s, ref.Bucket, opt.Deleting)
		if err == nil && inUse {
			err = ErrInUse
		}
		if err != nil && began {
			m.State = ""
			if rerr := k.restore(ctx, s, ref, k.marker.Sign(ref, m)); rerr != nil {
				// Not ErrInUse, which a caller takes as done: a retry
				// must come.
				return fmt.Errorf("checking the volume records of bucket %q (%v): %w", ref.Bucket, err, rerr)
			}
		}
		if err != nil {
			return err
		}
	}
	// The deleting volume's record goes last, with the mark: a caller
	// interrupted before that (a deadline) still finds it on its retry,
	// which then finishes the purge.
	last := []string{OwnerKey}
	if opt.Deleting != "" {
		last = []string{recordKey(opt.Deleting), OwnerKey}
	}
	deleted := 0
	for {
		var batch []string
		err := s.List(ctx, ref.Bucket, "", 1000, func(ob store.Object) error {
			if !slices.Contains(last, ob.Key) {
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
		if err := s.DeleteObjects(ctx, ref.Bucket, batch); err != nil {
			return err
		}
		deleted += len(batch)
		if opt.Progress != nil {
			opt.Progress(deleted)
		}
	}
	for _, key := range last {
		if err := s.DeleteObjects(ctx, ref.Bucket, []string{key}); err != nil {
			if key == OwnerKey {
				// The delete may have reached the store: never leave
				// the bucket unmarked on an answer lost.
				return errors.Join(err, k.restore(ctx, s, ref, deleting))
			}
			return err
		}
	}
	err = s.DeleteBucket(ctx, ref.Bucket)
	if err == nil {
		return nil
	}
	if rerr := k.restore(ctx, s, ref, deleting); rerr != nil {
		return errors.Join(err, rerr)
	}
	if errors.Is(err, fault.Unavailable) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w: the store refused deleting bucket %q (it may hold object versions, or objects a listing does not show): %v; "+
		"its objects are deleted and its mark is kept, so it stays bucket-csi's and no new volume is placed in it; "+
		"delete the remaining versions and the bucket with the store's own tools (a retry answers OK once the bucket is gone), or the versions and then `bucket-csi storage delete %s`", fault.Precondition, ref.Bucket, err, ref.Bucket)
}

// restore puts a mark back, even after ctx has ended.
func (k *Keeper) restore(ctx context.Context, s store.Store, ref Ref, mark []byte) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), restoreTimeout)
	defer cancel()
	if err := s.PutObject(ctx, ref.Bucket, OwnerKey, mark); err != nil {
		return fmt.Errorf("putting the mark of bucket %q back: %w", ref.Bucket, err)
	}
	return nil
}
