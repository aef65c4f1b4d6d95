package driver

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/bucket-csi/bucket-csi/pkg/bucket"
	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/nodestate"
	"github.com/bucket-csi/bucket-csi/pkg/store"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// stagedWith is the fingerprint a stage of h with secrets and flags leaves
// in its node-state record.
func (d *Driver) stagedWith(h volume.Handle, secrets map[string]string, flags volume.MountFlags) (nodestate.Staged, error) {
	mac, err := d.cfg.State.SecretsMAC(secrets)
	if err != nil {
		return nodestate.Staged{}, err
	}
	src := h.Store + "://" + h.Bucket
	if h.Location != "" {
		src += "@" + h.Location
	}
	if h.Prefix != "" {
		src += "/" + h.Prefix
	}
	return nodestate.Staged{Source: src, Flags: flags, SecretsMAC: mac}, nil
}

// stageConflict is the fault.Conflict for a live stage of rec that differs
// from what is asked (mode, bucket, mount options, secrets), naming what
// differs and never a secret; nil when nothing differs. A record written
// before fingerprints were kept is compared by mode only.
func stageConflict(rec *nodestate.Volume, mode volume.Mode, want nodestate.Staged) error {
	var diff []string
	if rec.Mode != mode {
		diff = append(diff, fmt.Sprintf("mode %s is staged, %s asked", rec.Mode, mode))
	}
	if rec.Staged != nil {
		diff = append(diff, rec.Staged.Diff(want)...)
	}
	if len(diff) == 0 {
		return nil
	}
	return fmt.Errorf("%w: volume %s is already staged on this node at %s and in use with other settings: %s; it must be unstaged (every pod using it on this node gone) before it can be staged differently",
		fault.Conflict, rec.VolumeID, rec.StagingPath, strings.Join(diff, "; "))
}

// releaseStale stops serving a stale stage (dead server, moved staging
// path, unfinished copy) before it is staged again, always with the stager
// of the mode it was staged in, never the new request's. In the same mode
// the stage is released, its data (a cache with pending uploads, a copy)
// kept for the new stage; in another mode it is unstaged for good first,
// so a MOUNT_CACHED stage is flushed (fault.Pending until every file is in
// the bucket) and its record and state directory are gone on success.
func (d *Driver) releaseStale(ctx context.Context, rec *nodestate.Volume, mode volume.Mode) error {
	stager, ok := d.cfg.Stagers[rec.Mode]
	if !ok {
		return fmt.Errorf("%w: volume %s is staged in mode %s, which is not available on this node", fault.Precondition, rec.VolumeID, rec.Mode)
	}
	if rec.Mode == mode {
		return stager.Release(ctx, rec)
	}
	d.log.Info("unstaging a stale stage before staging it in another mode", "volume", rec.VolumeID, "staged", rec.Mode, "asked", mode)
	return d.unstage(ctx, rec)
}

// checkNotDeleted refuses to stage a volume of a managed bucket whose
// record is gone: its handle was copied into a static PV after the dynamic
// volume was deleted, and the bucket may be deleted or reused by now. While
// the volume exists, a static PV with its handle shares its record and so
// counts as one of the bucket's users. One GET of the record decides; only
// when it is missing, one listing of the driver's metadata tells a bucket
// the driver never kept records in (an existing bucket used by `name`,
// which stays usable) from a deleted volume.
func (d *Driver) checkNotDeleted(ctx context.Context, id string, h volume.Handle, secrets map[string]string) error {
	if h.Existing || h.NameHash == "" {
		return nil
	}
	b, err := d.cfg.Stores.Get(h.Store)
	if err != nil {
		return err
	}
	st, err := b.Open(store.Secrets(secrets), h.Location)
	if err != nil {
		return err
	}
	defer st.Close()
	deleted := func(why string) error {
		return fmt.Errorf("%w: volume %s was deleted (%s); a static PV must use a %s volumeAttribute (and a volumeHandle of its own), not the handle of a deleted dynamic volume",
			fault.Precondition, id, why, volume.KeySource)
	}
	rec, err := bucket.GetRecord(ctx, st, h.Bucket, h.NameHash)
	switch {
	case err != nil:
		return err
	case rec != nil && rec.VolumeID != "" && rec.VolumeID != id:
		return deleted(fmt.Sprintf("its record in bucket %s now belongs to volume %s", h.Bucket, rec.VolumeID))
	case rec != nil:
		return nil
	}
	managed := false
	err = st.List(ctx, h.Bucket, bucket.MetaDir+"/", 1, func(store.Object) error { managed = true; return nil })
	if errors.Is(err, fault.NotFound) {
		return deleted("bucket " + h.Bucket + " is gone")
	}
	if err != nil {
		return err
	}
	if managed {
		return deleted("its record is gone from bucket " + h.Bucket)
	}
	return nil
}
