package readahead

import (
	"sync/atomic"
	"time"
)

// workers runs each task at once on a goroutine, reusing one that
// finished an earlier task within linger instead of starting a new one.
//
// A new goroutine starts on a small stack (2 KiB, or the average the
// runtime last measured), which one GET through rclone and the S3 SDK
// grows several times over, copying it each time: 10% of the FUSE
// server's CPU while it read 16 KiB files ahead of a reader (perf,
// 5 December 2026). A reused goroutine keeps its grown stack while busy
// (the collector may halve the stack of one left waiting).
//
// Contract: Go never blocks and never delays a task behind another (a
// task that waits, for a place among the fetches or for its context,
// waits on a goroutine of its own, as with `go task()`); a goroutine
// with no task for linger exits, and stopIdle ends the waiting ones at
// once, so an idle server keeps none.
type workers struct {
	idle   chan func() // unbuffered: a send succeeds only into a waiting worker; nil ends it
	linger time.Duration
	live   atomic.Int64 // goroutines started and not yet ended
}

// workerLinger is how long a worker waits for its next task: the next
// small file or lookup of a reader comes within milliseconds.
const workerLinger = time.Second

func newWorkers(linger time.Duration) *workers {
	return &workers{idle: make(chan func()), linger: linger}
}

// Go runs task on a waiting worker, or on a new one when none waits.
func (w *workers) Go(task func()) {
	select {
	case w.idle <- task:
	default:
		w.live.Add(1)
		go w.work(task)
	}
}

// stopIdle ends every worker waiting for a task; busy ones end linger
// after their task.
func (w *workers) stopIdle() {
	for {
		select {
		case w.idle <- nil:
		default:
			return
		}
	}
}

// work runs task, then each task handed to it while waiting, until it
// has waited linger for one or is stopped.
func (w *workers) work(task func()) {
	defer w.live.Add(-1)
	timer := time.NewTimer(w.linger)
	defer timer.Stop()
	for task != nil {
		task()
		task = nil // a waiting worker keeps nothing of its last task alive
		timer.Reset(w.linger)
		select {
		case task = <-w.idle:
		case <-timer.C:
		}
	}
}
