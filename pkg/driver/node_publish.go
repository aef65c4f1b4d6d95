package driver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/mountpoint"
	"github.com/bucket-csi/bucket-csi/pkg/nodestate"
	"github.com/bucket-csi/bucket-csi/pkg/store"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// NodePublishVolume bind-mounts the staged volume on the target path
// (read-only when asked). Without a staging path the request is an inline
// ephemeral volume: it is staged privately first, from its volume context.
func (d *Driver) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (_ *csi.NodePublishVolumeResponse, err error) {
	id, target, vc := req.GetVolumeId(), req.GetTargetPath(), req.GetVolumeCapability()
	switch {
	case id == "":
		return nil, required("volume_id")
	case target == "":
		return nil, required("target_path")
	case vc == nil:
		return nil, required("volume_capability")
	}
	if err := checkCapability(vc); err != nil {
		return nil, err
	}
	if err := checkPath("target_path", target); err != nil {
		return nil, err
	}
	if s := req.GetStagingTargetPath(); s != "" {
		if err := checkPath("staging_target_path", s); err != nil {
			return nil, err
		}
	}
	flags, err := mountFlags(vc)
	if err != nil {
		return nil, err
	}
	ro := req.GetReadonly() || flags.ReadOnly
	release, err := d.locks.acquire(id)
	if err != nil {
		return nil, err
	}
	defer release()

	who := podSubject(req.GetVolumeContext())
	staging := req.GetStagingTargetPath()
	if staging == "" {
		who.pv = "" // inline: no PV, whatever the pod's attributes say (trustedPV)
		defer func() { err = d.dropFailedInline(ctx, id, target, err) }()
		if staging, err = d.stageInline(ctx, id, who, req.GetVolumeContext(), req.GetSecrets(), vc); err != nil {
			return nil, err
		}
	}
	rec, err := d.cfg.State.Load(id)
	if err != nil {
		return nil, err
	}
	if rec == nil || rec.StagingPath != staging {
		return nil, fmt.Errorf("%w: volume %s is not staged at %s", fault.Precondition, id, staging)
	}
	if err := d.repairIfDead(ctx, rec, who); err != nil {
		return nil, err
	}
	single := vc.GetAccessMode().GetMode() == csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER
	if m, err := d.cfg.Mounts.Get(target); err != nil {
		return nil, err
	} else if m != nil {
		if slices.Contains(rec.Targets, target) {
			if err := d.publishConflict(rec, staging, target, m, ro, single); err != nil {
				return nil, err
			}
			return &csi.NodePublishVolumeResponse{}, nil
		}
		if own, err := d.ownBind(m, staging); err != nil {
			return nil, err
		} else if !own {
			return nil, fmt.Errorf("%w: %s is already a %s mount that is not this volume", fault.Precondition, target, m.FSType)
		}
		// Our own bind, made before a crash kept the record from being
		// saved: take it over rather than fail for ever.
		if err := d.cfg.Mounts.Detach(target); err != nil {
			return nil, err
		}
	}
	if others := d.publishedElsewhere(rec, target); len(others) > 0 && (single || rec.SingleWriter) {
		return nil, fmt.Errorf("%w: volume %s is single-writer and already published at %s", fault.Precondition, id, others[0])
	}
	if err := os.MkdirAll(target, 0o750); err != nil {
		return nil, fmt.Errorf("creating target path: %w", err)
	}
	if err := d.cfg.Mounts.Bind(staging, target, ro); err != nil {
		return nil, err
	}
	rec.Targets = append(rec.Targets, target)
	rec.SingleWriter = rec.SingleWriter || single
	if err := d.cfg.State.Save(rec); err != nil {
		_ = d.cfg.Mounts.Unmount(target)
		return nil, fmt.Errorf("saving node state: %w", err)
	}
	if f, _, ok := d.progressOf(rec.Mode, id); ok && f.Complete {
		// The copy ran before the pod was known: tell the pod too.
		d.event(subject{pod: who.pod}, nil, false, ReasonCopyDone, fmt.Sprintf("the volume is a copy of bucket %s on node %s: %d objects (%s) fetched", copyBucket(rec), d.cfg.NodeID, f.FilesDone, bytesText(f.BytesDone)))
	}
	return &csi.NodePublishVolumeResponse{}, nil
}

// ownBind reports whether m, the mount at a target path, is a bind this
// driver made of the stage at staging: a mount of the driver's FUSE type,
// or one of the same filesystem, device and root as staging's mount (a
// COPY stage is a bind or an overlay of the copy, whose binds show the
// same three).
func (d *Driver) ownBind(m *mountpoint.Info, staging string) (bool, error) {
	if m.FSType == fuseType {
		return true, nil
	}
	sm, err := d.cfg.Mounts.Get(staging)
	if err != nil || sm == nil {
		return false, err
	}
	return sm.FSType == m.FSType && sm.Major == m.Major && sm.Minor == m.Minor && sm.Root == m.Root, nil
}

// publishConflict compares a repeated publish with what is mounted at
// target: fault.Conflict when it was published read-only and read-write is
// asked or the reverse (a read-only staging makes every bind read-only, and
// that is what any publish of it gets), or with single-writer access and a
// shared mode is asked or the reverse; nil when compatible. A mounted,
// recorded target of a single-writer volume is its one writer: every other
// publish was refused while it was mounted.
func (d *Driver) publishConflict(rec *nodestate.Volume, staging, target string, m *mountpoint.Info, ro, single bool) error {
	if sm, err := d.cfg.Mounts.Get(staging); err != nil {
		return err
	} else if sm != nil && sm.ReadOnly {
		ro = true
	}
	word := map[bool]string{true: "read-only", false: "read-write"}
	var diff []string
	if m.ReadOnly != ro {
		diff = append(diff, fmt.Sprintf("it is published %s, %s asked", word[m.ReadOnly], word[ro]))
	}
	access := map[bool]string{true: "single-writer (SINGLE_NODE_SINGLE_WRITER)", false: "shared"}
	if rec.SingleWriter != single {
		diff = append(diff, fmt.Sprintf("it is published with %s access, %s asked", access[rec.SingleWriter], access[single]))
	}
	if len(diff) == 0 {
		return nil
	}
	return fmt.Errorf("%w: volume %s is already published at %s with another capability: %s", fault.Conflict, rec.VolumeID, target, strings.Join(diff, "; "))
}

// publishedElsewhere lists the recorded targets other than target that are
// still mounted.
func (d *Driver) publishedElsewhere(rec *nodestate.Volume, target string) []string {
	var out []string
	for _, t := range rec.Targets {
		if t == target {
			continue
		}
		if m, _ := d.cfg.Mounts.Get(t); m != nil {
			out = append(out, t)
		}
	}
	return out
}

// stageInline stages an inline ephemeral volume in the volume's private
// state directory. Its attributes must name an existing bucket (source),
// and its namespace must be under its cap of inline volumes on this node
// (admitInline).
func (d *Driver) stageInline(ctx context.Context, id string, who subject, attrs, secrets map[string]string, vc *csi.VolumeCapability) (string, error) {
	spec, err := d.inlineSpec(attrs, secrets)
	if err != nil {
		d.event(who, secrets, true, ReasonInlineRefused, err.Error())
		return "", err
	}
	done, err := d.admitInline(id, who.pod.Namespace)
	if err != nil {
		d.event(who, secrets, true, ReasonInlineRefused, err.Error())
		return "", err
	}
	defer done()
	staging := filepath.Join(d.cfg.State.VolumeDir(id), "mnt")
	return staging, d.stage(ctx, id, volume.Handle{Spec: spec}, staging, secrets, vc, who, true)
}

// dropFailedInline is err, after removing what a failed publish of inline
// volume id left staged when no pod uses it. kubelet forgets a publish that
// answered a final code (all but Unavailable, ResourceExhausted, Aborted,
// DeadlineExceeded and Canceled) and sends no NodeUnpublishVolume for it,
// so a stage left behind would hold its FUSE server, its disk and its
// namespace's place (admitInline) for ever. Only a stage that no pod
// uses (an inline record with no targets) is removed, with a bind of it
// left at target by a publish cut off before its record was saved; any
// other mount at target keeps the stage (answered Unavailable). A
// non-final answer keeps the stage: kubelet retries, or unpublishes once
// the pod is gone. When the stage cannot be read or removed the answer
// becomes Unavailable, so that kubelet unpublishes it once the pod is
// gone.
func (d *Driver) dropFailedInline(ctx context.Context, id, target string, err error) error {
	if err == nil || !finalForKubelet(err) {
		return err
	}
	unavailable := func(why error) error {
		return fmt.Errorf("%w: %v; and the inline volume's stage could not be removed (%v): NodeUnpublishVolume removes it", fault.Unavailable, err, why)
	}
	rec, lerr := d.cfg.State.Load(id)
	if lerr != nil {
		return unavailable(lerr)
	}
	if rec == nil || !rec.Ephemeral || len(rec.Targets) > 0 {
		return err
	}
	if m, gerr := d.cfg.Mounts.Get(target); gerr != nil {
		return unavailable(gerr)
	} else if m != nil {
		// A mount the driver cannot tell for its own bind (the stage
		// itself may be gone) stays, and so does the stage: kubelet's
		// unpublish, once the pod is gone, detaches the target.
		own, oerr := d.ownBind(m, rec.StagingPath)
		if oerr == nil && !own {
			oerr = fmt.Errorf("%s holds a %s mount that is not known as this volume's bind", target, m.FSType)
		}
		if oerr == nil {
			oerr = d.cfg.Mounts.Detach(target)
		}
		if oerr != nil {
			return unavailable(oerr)
		}
	}
	if uerr := d.unstage(context.WithoutCancel(ctx), rec); uerr != nil {
		return unavailable(uerr)
	}
	return err
}

// inlineSpec reads an inline volume's attributes and checks them against
// the inline policy: the error says why the volume is refused.
func (d *Driver) inlineSpec(attrs, secrets map[string]string) (volume.Spec, error) {
	spec, err := volume.Parse(attrs, d.cfg.Defaults, "")
	if err != nil {
		return spec, err
	}
	if !spec.Existing {
		return spec, fmt.Errorf("%w: inline volumes must name an existing bucket with %q; buckets are created through PersistentVolumeClaims", fault.Invalid, volume.KeySource)
	}
	if modes := d.cfg.Inline.modes(); !slices.Contains(modes, spec.Mode) {
		return spec, fmt.Errorf("%w: inline volumes may not use mode %s on this node (allowed: %v); use a PersistentVolume, or ask the admin to allow it (driver flag --inline-modes, chart value inline.modes)", fault.Denied, spec.Mode, modes)
	}
	if !slices.Contains(d.cfg.Inline.Stores, spec.Store) {
		return spec, fmt.Errorf("%w: inline volumes may not use store %q on this cluster (allowed: %v); use a PersistentVolume, or ask the admin to allow it", fault.Denied, spec.Store, d.cfg.Inline.Stores)
	}
	b, err := d.cfg.Stores.Get(spec.Store)
	if err != nil {
		return spec, err
	}
	// A secret without the store's own keys would fall back to the
	// driver's identity: it counts as no secret.
	if !b.HasCredentials(store.Secrets(secrets)) && !d.cfg.Inline.AmbientCredentials {
		return spec, fmt.Errorf("%w: inline volumes must bring credentials: set nodePublishSecretRef to a Secret in the pod's namespace (the driver's own identity is not lent to inline volumes)", fault.Denied)
	}
	return spec, nil
}

// NodeUnpublishVolume unmounts and removes the target path. A missing
// target answers OK. The last unpublish of an inline volume also unstages it.
func (d *Driver) NodeUnpublishVolume(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	id, target := req.GetVolumeId(), req.GetTargetPath()
	if id == "" {
		return nil, required("volume_id")
	}
	if target == "" {
		return nil, required("target_path")
	}
	if err := checkPath("target_path", target); err != nil {
		return nil, err
	}
	release, err := d.locks.acquire(id)
	if err != nil {
		return nil, err
	}
	defer release()
	// A terminating pod may still hold files open (or be stuck in a hung
	// mount): detach the bind mount; the staging mount serves what is open.
	if err := d.cfg.Mounts.Detach(target); err != nil {
		return nil, err
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("removing target path: %w", err)
	}
	rec, err := d.cfg.State.Load(id)
	if err != nil || rec == nil {
		return &csi.NodeUnpublishVolumeResponse{}, err
	}
	rec.Targets = slices.DeleteFunc(rec.Targets, func(t string) bool { return t == target })
	if len(rec.Targets) == 0 {
		rec.SingleWriter = false
	}
	if rec.Ephemeral && len(rec.Targets) == 0 {
		return &csi.NodeUnpublishVolumeResponse{}, d.unstage(ctx, rec)
	}
	return &csi.NodeUnpublishVolumeResponse{}, d.cfg.State.Save(rec)
}

// NodeGetVolumeStats reports filesystem usage of a published or staged
// path. The statfs runs with a deadline so a hung FUSE server cannot hang
// the call.
func (d *Driver) NodeGetVolumeStats(ctx context.Context, req *csi.NodeGetVolumeStatsRequest) (*csi.NodeGetVolumeStatsResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, required("volume_id")
	}
	path := req.GetVolumePath()
	if path == "" {
		return nil, required("volume_path")
	}
	if m, err := d.cfg.Mounts.Get(path); err != nil {
		return nil, err
	} else if m == nil {
		return nil, fmt.Errorf("%w: no volume is mounted at %s", fault.NotFound, path)
	}
	// One statfs in flight per path: against a hung server each would
	// hold an OS thread for good, and kubelet asks every minute.
	if _, busy := d.statfs.LoadOrStore(path, true); busy {
		return nil, fmt.Errorf("%w: the FUSE server at %s does not answer", fault.Unavailable, path)
	}
	var st unix.Statfs_t
	done := make(chan error, 1)
	go func() { done <- d.cfg.Statfs(path, &st); d.statfs.Delete(path) }()
	select {
	case err := <-done:
		if err != nil {
			return nil, fmt.Errorf("%w: statfs %s: %v", fault.Unavailable, path, err)
		}
	case <-time.After(5 * time.Second):
		return nil, fmt.Errorf("%w: the FUSE server at %s does not answer", fault.Unavailable, path)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	bs := int64(st.Bsize)
	return &csi.NodeGetVolumeStatsResponse{Usage: []*csi.VolumeUsage{
		{Unit: csi.VolumeUsage_BYTES, Total: int64(st.Blocks) * bs, Available: int64(st.Bavail) * bs, Used: int64(st.Blocks-st.Bfree) * bs},
		{Unit: csi.VolumeUsage_INODES, Total: int64(st.Files), Available: int64(st.Ffree), Used: int64(st.Files - st.Ffree)},
	}}, nil
}
