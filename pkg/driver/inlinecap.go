package driver

import (
	"fmt"
	"sync"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// inlineCap holds the inline volumes being staged, whose records may not
// be saved yet, so that two publishes racing in one namespace cannot both
// take its last place.
type inlineCap struct {
	mu      sync.Mutex
	staging map[string]string // volume ID → namespace
}

// admitInline admits inline volume id of namespace ns to be staged. It
// answers fault.Precondition when ns is empty (the CSIDriver lacks
// podInfoOnMount), and fault.Exhausted when ns already has
// InlinePolicy.PerNamespace other inline volumes on this node: those
// recorded in the node state (staged, or being staged, across restarts)
// and those admitted and not yet done. A volume already recorded as
// inline is always admitted: it holds its place (a second target, a
// repair). The caller calls done when the stage has returned, whatever
// its outcome: by then a volume that stays has its record.
func (d *Driver) admitInline(id, ns string) (done func(), err error) {
	limit := d.cfg.Inline.PerNamespace
	if limit <= 0 {
		return func() {}, nil
	}
	c := &d.inline
	c.mu.Lock()
	defer c.mu.Unlock()
	recs, err := d.cfg.State.All()
	if err != nil {
		return nil, err
	}
	held := map[string]bool{}
	for _, r := range recs {
		if r.VolumeID == id && r.Ephemeral {
			return func() {}, nil
		}
		if r.Ephemeral && r.Namespace == ns {
			held[r.VolumeID] = true
		}
	}
	if ns == "" {
		return nil, fmt.Errorf("%w: the inline volume's request names no pod namespace (%s), which kubelet sends when the CSIDriver sets podInfoOnMount: true; this node caps the inline volumes of each namespace (driver flag --inline-volumes-per-namespace) and cannot count this one",
			fault.Precondition, volume.KeyPodNamespace)
	}
	for v, vns := range c.staging {
		if vns == ns {
			held[v] = true
		}
	}
	if len(held) >= limit {
		return nil, fmt.Errorf("%w: namespace %q already has %d inline volumes on node %s, its cap (driver flag --inline-volumes-per-namespace, chart value inline.perNamespace); delete pods that use them, use PersistentVolumeClaims, or ask the admin to raise it",
			fault.Exhausted, ns, len(held), d.cfg.NodeID)
	}
	if c.staging == nil {
		c.staging = map[string]string{}
	}
	c.staging[id] = ns
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		delete(c.staging, id)
	}, nil
}
