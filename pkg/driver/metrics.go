package driver

import (
	"context"
	"sync"

	"github.com/bucket-csi/bucket-csi/pkg/metrics"
	"github.com/bucket-csi/bucket-csi/pkg/stage"
)

// VolumeFigures lists the volumes staged on this node with what their
// stagers report (stage.Reporter: FUSE server statistics, copy figures),
// all asked at once: the Source of the node's per-volume metrics. A volume
// whose stager reports nothing (or whose server does not answer) is listed
// without figures.
func (d *Driver) VolumeFigures(ctx context.Context) []metrics.Volume {
	recs, err := d.cfg.State.All()
	if err != nil {
		d.log.Warn("metrics: listing staged volumes", "err", err)
		return nil
	}
	out := make([]metrics.Volume, len(recs))
	var wg sync.WaitGroup
	for i, rec := range recs {
		out[i] = metrics.Volume{ID: rec.VolumeID, PV: rec.PV, Mode: string(rec.Mode)}
		r, ok := d.cfg.Stagers[rec.Mode].(stage.Reporter)
		if !ok {
			continue
		}
		wg.Go(func() {
			f := r.Figures(ctx, rec)
			out[i].FUSE, out[i].NoStats, out[i].Copy = f.FUSE, f.NoStats, f.Copy
		})
	}
	wg.Wait()
	return out
}
