package bench

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/bucket-csi/bucket-csi/pkg/fuseproto"
	"github.com/bucket-csi/bucket-csi/pkg/mounter"
	"github.com/bucket-csi/bucket-csi/pkg/stage"
)

// BenchmarkCachedWarmRatio: a warm MOUNT_CACHED read of the large object
// against the same read of a local copy, measured in back-to-back pairs so
// that the disk's swings between runs hit both sides: "x-local-disk" with
// every page cache dropped before each read (the cache file is read from
// disk, as in SeqRead's warm column), "x-local-hot" with both files in the
// page cache (what the FUSE path itself costs). Median of 3 pairs per run.
// The read-write volume is read through the FUSE server; the read-only one
// through FUSE passthrough where the kernel offers it
// ("passthrough-opens" says how many of its opens were).
func BenchmarkCachedWarmRatio(b *testing.B) {
	fg := newFigure(b)
	f := data(b)
	local := localCopy(b, f)
	for _, c := range []struct {
		name  string
		flags []string
	}{{"bucket-csi-MOUNT_CACHED-warm", nil}, {"bucket-csi-MOUNT_CACHED-warm-ro", []string{"ro"}}} {
		fg.add(c.name, func(b *testing.B) {
			v := newVolume(b, f, 'K', "large")
			v.flags = c.flags
			path := filepath.Join(v.stage(b), "large.bin")
			readFile(b, path) // fills the cache
			time.Sleep(time.Second)
			rate := func(p string) float64 {
				t := time.Now()
				readFile(b, p)
				return float64(f.large) / time.Since(t).Seconds()
			}
			for b.Loop() {
				var cold, hot []float64
				for range 3 {
					dropCaches(b)
					l := rate(local)
					dropCaches(b)
					cold = append(cold, rate(path)/l)
					hot = append(hot, rate(path)/rate(local))
				}
				slices.Sort(cold)
				slices.Sort(hot)
				b.ReportMetric(cold[1], "x-local-disk")
				b.ReportMetric(hot[1], "x-local-hot")
			}
			b.ReportMetric(float64(v.stats(b).PassthroughOpens), "passthrough-opens")
		})
	}
	fg.run()
}

// stats are the figures of the volume's FUSE server.
func (v *ourVolume) stats(b *testing.B) fuseproto.Stats {
	b.Helper()
	for _, rec := range v.drv.Staged(b) {
		if rec.VolumeID == v.id {
			// The control socket pkg/stage gives each FUSE server.
			st, err := mounter.QueryStats(context.Background(), stage.ControlSocket(rec))
			if err != nil {
				b.Fatal(err)
			}
			return st
		}
	}
	b.Fatalf("%s is not staged", v.id)
	return fuseproto.Stats{}
}
