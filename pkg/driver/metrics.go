package driver

import (
	"context"
	"errors"
	"os"
	"sync"
	"time"

	"github.com/bucket-csi/bucket-csi/pkg/metrics"
	"github.com/bucket-csi/bucket-csi/pkg/mounter"
	"github.com/bucket-csi/bucket-csi/pkg/stage"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// copyFigures is the COPY stager's view of its copies (stage.Copy).
type copyFigures interface {
	Figures(volumeID string) (stage.CopyFigures, bool)
}

// VolumeFigures lists the volumes staged on this node with what their
// FUSE servers (over their control sockets, all asked at once, each
// within 3 s) and copies report: the Source of the node's per-volume
// metrics. A server that does not answer is listed without figures.
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
		if rec.Mode == volume.ModeCopy {
			if c, ok := d.cfg.Stagers[volume.ModeCopy].(copyFigures); ok {
				if f, ok := c.Figures(rec.VolumeID); ok {
					out[i].Copy = &f
				}
			}
			continue
		}
		if !rec.Server.Alive() {
			continue
		}
		if _, err := os.Stat(stage.ControlSocket(rec)); errors.Is(err, os.ErrNotExist) {
			out[i].NoStats = true
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			if st, err := mounter.QueryStats(ctx, stage.ControlSocket(rec)); err == nil {
				out[i].FUSE = &st
			}
		})
	}
	wg.Wait()
	return out
}
