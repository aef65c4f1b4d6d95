package driver

import (
	"context"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/nodestate"
	"github.com/bucket-csi/bucket-csi/pkg/stage"
)

// NodeGetVolumeHealth reports a staged volume whose server is gone as
// INACCESSIBLE, then what its stager's Check finds (stage.Checker: a
// MOUNT_CACHED volume whose uploads keep failing is DEGRADED, with the
// pending files and bytes). An empty list is healthy.
func (d *Driver) NodeGetVolumeHealth(ctx context.Context, req *csi.NodeGetVolumeHealthRequest) (*csi.NodeGetVolumeHealthResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, required("volume_id")
	}
	rec, err := d.cfg.State.Load(id)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		return nil, fmt.Errorf("%w: volume %s is not staged on this node", fault.NotFound, id)
	}
	health := &csi.VolumeHealth{VolumeId: id}
	add := func(t csi.VolumeHealthErrorType, reason, msg string) {
		health.HealthStatuses = append(health.HealthStatuses, &csi.VolumeHealth_VolumeHealthEntry{Status: t, Reason: reason, Message: msg})
	}
	stager, ok := d.cfg.Stagers[rec.Mode]
	if !ok || !stager.Healthy(rec) {
		add(csi.VolumeHealthErrorType_INACCESSIBLE, "ServerGone", "the volume's server process is not running; a new publish or stage restarts it")
	} else if c, ok := stager.(stage.Checker); ok {
		for _, f := range c.Check(ctx, rec) {
			t := csi.VolumeHealthErrorType_DEGRADED
			if f.Inaccessible {
				t = csi.VolumeHealthErrorType_INACCESSIBLE
			}
			add(t, f.Reason, f.Message)
		}
	}
	return &csi.NodeGetVolumeHealthResponse{VolumeHealth: health}, nil
}

// repairIfDead restarts the server of a staged volume that died, so a new
// publish gets a working mount. Pods already running keep the broken mount
// they had until they restart.
func (d *Driver) repairIfDead(ctx context.Context, rec *nodestate.Volume, who subject) error {
	stager, ok := d.cfg.Stagers[rec.Mode]
	if !ok || stager.Healthy(rec) {
		return nil
	}
	r, ok := stager.(stage.Repairer)
	if !ok {
		return fmt.Errorf("%w: volume %s is no longer staged correctly; stage it again", fault.Precondition, rec.VolumeID)
	}
	d.log.Warn("restarting the dead server of a staged volume", "volume", rec.VolumeID)
	if err := r.Repair(ctx, rec); err != nil {
		return err
	}
	d.cfg.Volumes.Repaired(rec.VolumeID)
	if who.pv == "" {
		who.pv = rec.PV
	}
	d.event(who, nil, true, ReasonFUSEServerRestarted, fmt.Sprintf("the FUSE server of volume %s on node %s had died and was restarted; pods that were already running keep a broken mount until they restart", rec.VolumeID, d.cfg.NodeID))
	return d.cfg.State.Save(rec)
}
