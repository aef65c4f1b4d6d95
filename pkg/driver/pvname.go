package driver

import (
	"context"
	"time"
)

// pvName returns the name of the PersistentVolume whose handle is id,
// for the events of a stage: kubelet names the PV in NodeStage's volume
// context only when the controller put it there (dynamic volumes), so a
// static PV is found by its handle among the cluster's PVs. Found names
// are kept; "" when there is no cluster, no such PV, or the listing fails
// (events then go to the pod alone).
func (d *Driver) pvName(ctx context.Context, id, given string) string {
	if given != "" || d.cfg.PVs == nil {
		return given
	}
	if name, ok := d.pvNames.Load(id); ok {
		return name.(string)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	pvs, err := d.cfg.PVs(ctx)
	if err != nil {
		d.log.Debug("listing PersistentVolumes for events", "volume", id, "err", err)
		return ""
	}
	for _, pv := range pvs {
		if c := pv.Spec.CSI; c != nil && c.Driver == Name && c.VolumeHandle == id {
			d.pvNames.Store(id, pv.Name)
			return pv.Name
		}
	}
	return ""
}
