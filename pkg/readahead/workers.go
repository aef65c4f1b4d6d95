package readahead

import "time"

// workers runs each task at once on a goroutine, reusing one that
// finished an earlier task within linger instead of starting a new one.
//
// A new goroutine starts on an 8 KiB stack, which one GET through rclone
// and the S3 SDK grows several times over, copying it each time: 10% of
// the FUSE server's CPU while it read 16 KiB files ahead of a reader
// (perf, 5 December 2026). A reused goroutine keeps its grown stack.
//
// Contract: Go never blocks and never delays a task behind another (a
// task that waits, for a place among the fetches or for its context,
// waits on a goroutine of its own, as with `go task()`); a goroutine
// with no task for linger exits, so an idle server keeps none.
type workers struct {
	idle   chan func() // unbuffered: a send succeeds only into an idle worker
	linger time.Duration
}

// workerLinger is how long a worker waits for its next task: the next
// small file or lookup of a reader comes within milliseconds.
const workerLinger = time.Second

func newWorkers(linger time.Duration) *workers {
	return &workers{idle: make(chan func()), linger: linger}
}

// Go runs task on an idle worker, or on a new one when none is idle.
func (w *workers) Go(task func()) {
	select {
	case w.idle <- task:
	default:
		go w.work(task)
	}
}

// work runs task, then each task handed to it while idle, until it has
// waited linger for one.
func (w *workers) work(task func()) {
	timer := time.NewTimer(w.linger)
	defer timer.Stop()
	for {
		task()
		timer.Reset(w.linger)
		select {
		case task = <-w.idle:
		case <-timer.C:
			return
		}
	}
}
