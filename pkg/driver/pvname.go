package driver

import (
	"context"
	"time"

	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// pvRef is what NodeStage knows of a volume's PersistentVolume: its name
// (for events, metrics and logs) and its claim's namespace (the tenant the
// node's shared places are counted against, stage.Request.Tenant).
type pvRef struct {
	name, namespace string
}

// stagedPV returns the PersistentVolume of the volume whose handle is id.
// The controller puts both in the volume context of a dynamic volume (a
// PV's attributes are written by the provisioner or an admin, never by a
// pod). Otherwise the PV is looked up among the cluster's PVs: by the name
// the context gives (a volume created before the context carried the
// namespace), else by its handle (a static PV; several PVs may share one,
// and the first bound one is taken); its claim from the PV's claimRef.
// A bound PV found is kept until the volume is unstaged (forgetPV); what
// is not found is "" (no cluster, no such PV, an unbound PV, or the
// listing failed: events then go to the pod alone, and the volume shares
// the places of volumes whose namespace is not known).
func (d *Driver) stagedPV(ctx context.Context, id string, attrs map[string]string) pvRef {
	given := pvRef{name: attrs[volume.KeyPVName], namespace: attrs[volume.KeyPVCNamespace]}
	if (given.name != "" && given.namespace != "") || d.cfg.PVs == nil {
		return given
	}
	if found, ok := d.pvRefs.Load(id); ok {
		return merge(given, found.(pvRef))
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	pvs, err := d.cfg.PVs(ctx)
	if err != nil {
		d.log.Debug("listing PersistentVolumes for the volume's PV and claim", "volume", id, "err", err)
		return given
	}
	var found pvRef
	for _, pv := range pvs {
		c := pv.Spec.CSI
		if c == nil || c.Driver != Name || c.VolumeHandle != id || (given.name != "" && pv.Name != given.name) {
			continue
		}
		ref := pvRef{name: pv.Name}
		if c := pv.Spec.ClaimRef; c != nil {
			ref.namespace = c.Namespace
		}
		if found.name == "" || (found.namespace == "" && ref.namespace != "") {
			found = ref
		}
	}
	if found.namespace != "" {
		d.pvRefs.Store(id, found) // bound: its claim stays until unstage
	}
	return merge(given, found)
}

// forgetPV drops what stagedPV kept of id: a PV released and bound again
// may serve another namespace at its next stage.
func (d *Driver) forgetPV(id string) { d.pvRefs.Delete(id) }

// merge fills what the volume context left out of given from found.
func merge(given, found pvRef) pvRef {
	if given.name == "" {
		given.name = found.name
	}
	if given.namespace == "" {
		given.namespace = found.namespace
	}
	return given
}
