package fuseserver

import (
	"context"
	"runtime/debug"
	"syscall"
	"time"
)

// A node runs one FUSE server per staged volume, so the memory of idle
// servers adds up. Go returns freed heap to the kernel only slowly; an
// idle server gives it back at once.

// idleCPU is the CPU time per idleTick below which the server counts as
// idle.
const (
	idleTick = time.Second
	idleCPU  = 5 * time.Millisecond
)

// trimWhenIdle returns freed memory to the kernel once after every busy
// spell, when a tick passes with almost no CPU used, until ctx ends;
// release (if not nil) first drops what the process holds for reuse.
func trimWhenIdle(ctx context.Context, release func()) {
	t := time.NewTicker(idleTick)
	defer t.Stop()
	last, trimmed := cpuTime(), true
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := cpuTime()
		busy := now-last >= idleCPU
		last = now
		switch {
		case busy:
			trimmed = false
		case !trimmed:
			if release != nil {
				release()
			}
			debug.FreeOSMemory()
			trimmed = true
			last = cpuTime() // the trim itself is not activity
		}
	}
}

// cpuTime is the process's user plus system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
