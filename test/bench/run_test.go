package bench

import (
	"path/filepath"
	"strings"
	"testing"
)

// mounted is one system's mount of a prefix during a benchmark.
type mounted struct {
	dir string // the prefix's directory in the mount
	pid int    // the FUSE server
	// vol is our volume (its server's stats), nil for the other systems.
	vol *ourVolume
}

// runOptions describe how a figure runs on the mounts.
type runOptions struct {
	prefix string
	// prepare runs untimed before each iteration (evict the client's
	// cache, warm the server's).
	prepare func(b *testing.B, m mounted)
	// body is the timed work; it returns the bytes it read or wrote.
	body func(b *testing.B, m mounted) int64
	// fresh mounts every system afresh before each iteration.
	fresh bool
	// stats adds the FUSE server's CPU seconds per GiB and peak RSS.
	stats bool
}

// ourProfile is the workload profile of a bucket-csi system name: what
// follows "+" ("bucket-csi-MOUNT+dataset"), or "" for the defaults.
func ourProfile(system string) string {
	_, p, _ := strings.Cut(system, "+")
	return p
}

// ourMode maps a bucket-csi system name to its volume ID mode letter.
func ourMode(system string) byte {
	switch {
	case strings.HasPrefix(system, "bucket-csi-MOUNT_CACHED"):
		return 'K'
	case system == "bucket-csi-COPY":
		return 'C'
	}
	return 'M'
}

// onMounts adds one sub-benchmark per system to fg.
// bucket-csi-MOUNT_CACHED-cold and rclone-skypilot are mounted afresh
// before every iteration, so each one starts from an empty cache; with
// fresh, every system is.
func onMounts(fg *figure, f *fixture, systems []string, o runOptions) {
	for _, sys := range systems {
		fg.add(sys, func(b *testing.B) {
			var (
				v                *ourVolume
				m                mounted
				cpu, peak        float64
				total            int64
				ours             = strings.HasPrefix(sys, "bucket-csi-")
				remount, started = o.fresh || sys == "bucket-csi-MOUNT_CACHED-cold" || sys == "rclone-skypilot", false
			)
			mount := func() {
				if !ours {
					dir, pid := mountOther(b, f, sys)
					m = mounted{dir: filepath.Join(dir, o.prefix), pid: pid}
					return
				}
				if v == nil {
					v = newVolume(b, f, ourMode(sys), o.prefix)
					v.profile = ourProfile(sys)
				} else {
					v.unstage(b)
				}
				m = mounted{dir: v.stage(b)}
				m.pid, m.vol = v.pid(b), v
			}
			mount()
			for b.Loop() {
				b.StopTimer()
				if started && remount {
					mount()
				}
				started = true
				if o.prepare != nil {
					o.prepare(b, m)
				}
				c0 := procCPU(b, m.pid)
				b.StartTimer()
				total += o.body(b, m)
				b.StopTimer()
				cpu += procCPU(b, m.pid) - c0
				peak = max(peak, procMemMiB(b, m.pid, "VmHWM"))
				b.StartTimer()
			}
			if o.stats && total > 0 {
				b.ReportMetric(cpu/(float64(total)/(1<<30)), "cpu-s/GiB")
				b.ReportMetric(peak, "peak-RSS-MiB")
			}
		})
	}
}
