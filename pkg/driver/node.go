package driver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/nodestate"
	"github.com/bucket-csi/bucket-csi/pkg/stage"
	"github.com/bucket-csi/bucket-csi/pkg/store"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// fuseType is the filesystem type of the driver's FUSE mounts in mountinfo.
const fuseType = volume.FSType

// NodeGetInfo returns the node ID. Buckets have no topology.
func (d *Driver) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{NodeId: d.cfg.NodeID}, nil
}

// NodeGetCapabilities advertises staging, volume stats and health, the
// volume mount group (kubelet then hands the pod's fsGroup to the driver
// instead of chowning the bucket), and
// SINGLE_NODE_MULTI_WRITER (so RWO pods on one node may share a volume and
// RWOP maps to SINGLE_NODE_SINGLE_WRITER, which is enforced).
func (d *Driver) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	var caps []*csi.NodeServiceCapability
	for _, t := range []csi.NodeServiceCapability_RPC_Type{
		csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME,
		csi.NodeServiceCapability_RPC_GET_VOLUME_STATS,
		csi.NodeServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
		csi.NodeServiceCapability_RPC_GET_VOLUME_HEALTH,
		csi.NodeServiceCapability_RPC_VOLUME_MOUNT_GROUP,
	} {
		caps = append(caps, &csi.NodeServiceCapability{Type: &csi.NodeServiceCapability_Rpc{Rpc: &csi.NodeServiceCapability_RPC{Type: t}}})
	}
	return &csi.NodeGetCapabilitiesResponse{Capabilities: caps}, nil
}

// NodeStageVolume attaches the volume at the staging path in its mode. A
// repeat for a volume that is staged there and healthy answers OK; a stale
// stage (dead FUSE server, other path) is torn down and staged again.
func (d *Driver) NodeStageVolume(ctx context.Context, req *csi.NodeStageVolumeRequest) (*csi.NodeStageVolumeResponse, error) {
	id, staging := req.GetVolumeId(), req.GetStagingTargetPath()
	switch {
	case id == "":
		return nil, required("volume_id")
	case staging == "":
		return nil, required("staging_target_path")
	case req.GetVolumeCapability() == nil:
		return nil, required("volume_capability")
	}
	if err := checkCapability(req.GetVolumeCapability()); err != nil {
		return nil, err
	}
	if err := checkPath("staging_target_path", staging); err != nil {
		return nil, err
	}
	h, err := d.handle(id, req.GetVolumeContext())
	if err != nil {
		return nil, err
	}
	if _, err := mountFlags(req.GetVolumeCapability()); err != nil {
		return nil, err
	}
	release, err := d.locks.acquire(id)
	if err != nil {
		return nil, err
	}
	defer release()
	pv := d.stagedPV(ctx, id, req.GetVolumeContext())
	return &csi.NodeStageVolumeResponse{}, d.stage(ctx, id, h, staging, req.GetSecrets(), req.GetVolumeCapability(), subject{pv: pv.name, namespace: pv.namespace}, false)
}

// mountOptions reads the capability's mount flags and read-only access
// modes: what a repeated stage must match (see stage). The volume mount
// group is left out: kubelet passes the fsGroup of whichever pod comes
// first (after a kubelet restart, possibly another pod of the same PVC).
func mountOptions(vc *csi.VolumeCapability) (volume.MountFlags, error) {
	flags, err := volume.ParseMountFlags(vc.GetMount().GetMountFlags())
	if err != nil {
		return flags, err
	}
	flags.ReadOnly = flags.ReadOnly || readOnlyMode(vc)
	return flags, nil
}

// mountFlags is mountOptions plus the volume mount group (the pod's
// fsGroup: files get that group and are group-writable).
func mountFlags(vc *csi.VolumeCapability) (volume.MountFlags, error) {
	flags, err := mountOptions(vc)
	if err != nil {
		return flags, err
	}
	if g := vc.GetMount().GetVolumeMountGroup(); g != "" {
		gid, err := strconv.ParseUint(g, 10, 32)
		if err != nil {
			return flags, fmt.Errorf("%w: volume_mount_group %q is not a group ID", fault.Invalid, g)
		}
		flags.GID, flags.Umask = uint32(gid), flags.Umask&^0o070
	}
	return flags, nil
}

// handle decodes a volume ID the controller issued, or, for a static
// PersistentVolume whose volumeHandle the admin chose, reads the bucket from
// its volumeAttributes (`source`, or `name` of an existing bucket).
func (d *Driver) handle(id string, attrs map[string]string) (volume.Handle, error) {
	h, err := volume.ParseID(d.cfg.Defaults.Kinds, id)
	if err == nil {
		// The profile is not in the ID: CreateVolume put it in the
		// volume context (or the admin in a static PV's attributes).
		h.Profile, err = volume.ParseProfile(attrs[volume.KeyProfile])
		return h, err
	}
	if attrs[volume.KeySource] == "" && attrs[volume.KeyName] == "" {
		return volume.Handle{}, err
	}
	spec, perr := volume.Parse(attrs, d.cfg.Defaults, "")
	if perr != nil {
		return volume.Handle{}, perr
	}
	// The node never creates buckets: a static volume uses what exists.
	spec.Existing, spec.Persistent = true, true
	return volume.Handle{Spec: spec}, nil
}

// stage is NodeStage's work, shared with inline (ephemeral) publishes.
// The caller holds the volume's lock.
//
// A repeat for a live stage at the same path with the same mode, bucket,
// mount options (mountOptions) and secrets answers OK; a live stage with
// any of them different answers fault.Conflict naming what differs (it
// serves pods and is never torn down under them). A stale stage (dead FUSE server, moved
// staging path, unfinished copy) is released with its own mode's stager
// (see releaseStale) and staged again as asked.
func (d *Driver) stage(ctx context.Context, id string, h volume.Handle, staging string, secrets map[string]string, vc *csi.VolumeCapability, who subject, ephemeral bool) error {
	before, _, known := d.progressOf(h.Mode, id)
	failed, err := d.stageWork(ctx, id, h, staging, secrets, vc, who, ephemeral)
	if err != nil && !errors.Is(err, fault.Pending) {
		// Not staged: the next attempt is a new stage.
		d.cfg.Volumes.StageFailed(id)
	}
	if err == nil && known && before.Complete {
		return nil // a repeat of a finished stage: nothing new to tell
	}
	d.stageEvents(who, id, h, secrets, known && before.Running, err)
	if failed != nil {
		return d.dropFailedStage(ctx, failed, err)
	}
	return err
}

// dropFailedStage lets rec go, a stage whose stager failed with err, when
// kubelet takes err's code as final: kubelet then counts the volume as not
// staged and sends no NodeUnstageVolume for it, even once the pod is gone
// (it stages again while the pod exists), so what the stage holds would
// stay for ever. A stager that can let such a stage go (stage.Abandoner:
// COPY, whose copy stays as a kept, evictable one; MOUNT_CACHED when its
// cache holds no file) does, and the volume is forgotten; when that cannot
// be done now, the answer becomes Unavailable, which kubelet takes as
// uncertain: it unstages once the pod is gone. A stage that pods of an
// earlier stage still use (rec.Targets) is left to their unpublishes, an
// inline volume's to dropFailedInline (its ID is its pod's: nothing kept
// for it would be used again), and a stage the stager keeps (a cache
// with pending uploads) or other stagers' stays for the next one.
func (d *Driver) dropFailedStage(ctx context.Context, rec *nodestate.Volume, err error) error {
	ab, ok := d.cfg.Stagers[rec.Mode].(stage.Abandoner)
	if !ok || !finalForKubelet(err) || len(rec.Targets) > 0 || rec.Ephemeral {
		return err
	}
	let, derr := ab.Abandon(context.WithoutCancel(ctx), rec)
	if derr == nil && let {
		derr = d.forget(rec)
	}
	if derr != nil {
		return fmt.Errorf("%w: %v; and what the failed stage holds could not be let go yet (%v): NodeUnstageVolume does it", fault.Unavailable, err, derr)
	}
	return err
}

// stageWork is stage without its events. When the volume's stager itself
// failed, it also returns the stage's record (failed), for
// dropFailedStage; a MOUNT stage (stage.Disposer) is discarded here.
func (d *Driver) stageWork(ctx context.Context, id string, h volume.Handle, staging string, secrets map[string]string, vc *csi.VolumeCapability, who subject, ephemeral bool) (failed *nodestate.Volume, err error) {
	pv := who.pv
	stager, ok := d.cfg.Stagers[h.Mode]
	if !ok {
		return nil, fmt.Errorf("%w: mode %s is not available on this node", fault.Invalid, h.Mode)
	}
	flags, err := mountFlags(vc)
	if err != nil {
		return nil, err
	}
	opts, err := mountOptions(vc)
	if err != nil {
		return nil, err
	}
	want, err := d.stagedWith(h, secrets, opts)
	if err != nil {
		return nil, err
	}
	rec, err := d.cfg.State.Load(id)
	if err != nil {
		return nil, err
	}
	var targets []string
	var singleWriter bool
	if rec != nil {
		old, known := d.cfg.Stagers[rec.Mode]
		if live := known && old.Healthy(rec); live {
			if err := stageConflict(rec, h.Mode, want); err != nil {
				return nil, err
			}
			if rec.StagingPath == staging {
				return nil, nil
			}
		}
	}
	if err := d.checkNotDeleted(ctx, id, h, secrets); err != nil {
		return nil, err
	}
	d.cfg.Volumes.Staging(id, time.Now())
	if rec != nil {
		// Pods already published keep their record (and RWOP its rule).
		targets, singleWriter = rec.Targets, rec.SingleWriter
		if err := d.releaseStale(ctx, rec, h.Mode); err != nil {
			return nil, err
		}
	}
	if err := d.clearStaleMount(staging); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(staging, 0o750); err != nil {
		return nil, fmt.Errorf("creating staging path: %w", err)
	}
	dir, err := d.cfg.State.Ensure(id)
	if err != nil {
		return nil, err
	}
	// Recorded before the work starts, so an unstage that comes while it
	// is still running (a pod deleted mid-copy) finds and stops it.
	rec = &nodestate.Volume{VolumeID: id, PV: pv, StagingPath: staging, Mode: h.Mode, StateDir: dir, Ephemeral: ephemeral,
		Targets: targets, SingleWriter: singleWriter, StagedAt: time.Now().UTC(), Staged: &want}
	if ephemeral {
		rec.Namespace = who.pod.Namespace // counted against InlinePolicy.PerNamespace
	}
	if err := d.cfg.State.Save(rec); err != nil {
		return nil, fmt.Errorf("saving node state: %w", err)
	}
	req := stage.Request{VolumeID: id, Handle: h, StagingPath: staging, Secrets: store.Secrets(secrets), Flags: flags, StateDir: dir, PV: pv, Tenant: who.namespace}
	if err := stager.Stage(ctx, req, rec); err != nil {
		if dp, ok := stager.(stage.Disposer); ok && dp.DiscardFailed() {
			// Nothing of value in the state; but never remove a
			// directory with a mount below it.
			if left, berr := d.cfg.Mounts.Below(dir); berr == nil && len(left) == 0 {
				_ = d.cfg.State.Remove(id)
			}
			return nil, err
		}
		return rec, err
	}
	if err := d.cfg.State.Save(rec); err != nil {
		_, _ = stager.Unstage(context.WithoutCancel(ctx), rec)
		return nil, fmt.Errorf("saving node state: %w", err)
	}
	d.cfg.Volumes.Staged(id, string(h.Mode), time.Now())
	return nil, nil
}

// clearStaleMount removes a leftover mount of this driver at path (from a
// lost state record); any other filesystem there is refused.
func (d *Driver) clearStaleMount(path string) error {
	m, err := d.cfg.Mounts.Get(path)
	if err != nil || m == nil {
		return err
	}
	if m.FSType != fuseType {
		return fmt.Errorf("%w: %s is already a %s mount that this driver did not make", fault.Precondition, path, m.FSType)
	}
	return d.cfg.Mounts.Unmount(path)
}

// NodeUnstageVolume detaches the volume from the staging path. Missing
// volumes and paths answer OK. Pending work (MOUNT_CACHED uploads) answers
// Unavailable and leaves everything in place for the retry.
func (d *Driver) NodeUnstageVolume(ctx context.Context, req *csi.NodeUnstageVolumeRequest) (*csi.NodeUnstageVolumeResponse, error) {
	id, staging := req.GetVolumeId(), req.GetStagingTargetPath()
	if id == "" {
		return nil, required("volume_id")
	}
	if staging == "" {
		return nil, required("staging_target_path")
	}
	if err := checkPath("staging_target_path", staging); err != nil {
		return nil, err
	}
	release, err := d.locks.acquire(id)
	if err != nil {
		return nil, err
	}
	defer release()
	rec, err := d.cfg.State.Load(id)
	if err != nil {
		return nil, err
	}
	d.forgetPV(id)
	if rec == nil || rec.StagingPath != staging {
		return &csi.NodeUnstageVolumeResponse{}, d.clearStaleMount(staging)
	}
	return &csi.NodeUnstageVolumeResponse{}, d.unstage(ctx, rec)
}

// unstage tears a staged volume down and forgets it.
func (d *Driver) unstage(ctx context.Context, rec *nodestate.Volume) error {
	stager, ok := d.cfg.Stagers[rec.Mode]
	if !ok {
		return fmt.Errorf("%w: mode %s is not available on this node", fault.Precondition, rec.Mode)
	}
	start := time.Now()
	did, err := stager.Unstage(ctx, rec)
	if err != nil {
		d.unstageEvents(rec.PV, rec.VolumeID, did, err)
		// The stager may have changed rec (a drain server started): keep it.
		if serr := d.cfg.State.Save(rec); serr != nil {
			d.log.Warn("saving node state", "volume", rec.VolumeID, "err", serr)
		}
		return err
	}
	if err := d.forget(rec); err != nil {
		return err
	}
	if did.Flush {
		d.cfg.Volumes.Flushed(string(rec.Mode), time.Since(start))
	}
	d.unstageEvents(rec.PV, rec.VolumeID, did, nil)
	return nil
}

// forget removes the record and state directory of a volume its stager
// has let go, and its figures; never through a mount still below the
// directory.
func (d *Driver) forget(rec *nodestate.Volume) error {
	if left, err := d.cfg.Mounts.Below(d.cfg.State.VolumeDir(rec.VolumeID)); err != nil || len(left) > 0 {
		return fmt.Errorf("%w: mounts left below the volume's state directory: %v %v", fault.Unavailable, left, err)
	}
	d.cfg.Volumes.Forget(rec.VolumeID)
	return d.cfg.State.Remove(rec.VolumeID)
}
