package readahead

import (
	"sync"
	"testing"
	"time"
)

// waitFor polls cond until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// TestWorkersNeverQueue: tasks that all block start at once (Go never
// waits for a worker and never queues a task behind a blocked one).
func TestWorkersNeverQueue(t *testing.T) {
	w := newWorkers(50 * time.Millisecond)
	const n = 20
	release := make(chan struct{})
	defer close(release)
	var started sync.WaitGroup
	started.Add(n)
	given := make(chan struct{})
	go func() {
		for range n {
			w.Go(func() {
				started.Done()
				<-release
			})
		}
		close(given)
	}()
	all := make(chan struct{})
	go func() { started.Wait(); close(all) }()
	select {
	case <-all:
	case <-time.After(10 * time.Second):
		select {
		case <-given:
			t.Fatal("blocked tasks did not all start: Go queued them")
		default:
			t.Fatal("Go blocked while the tasks before it waited")
		}
	}
}

// TestWorkersReuseAndExit: a task given to Go once a worker finished its
// own runs on that worker, no new goroutine; a worker with nothing to do
// ends after linger, and stopIdle ends a waiting one at once.
func TestWorkersReuseAndExit(t *testing.T) {
	// The worker takes Go's task once it waits for its next one; until
	// then Go starts a second worker, so on a busy machine try again.
	var w *workers
	reused := false
	for try := 0; try < 50 && !reused; try++ {
		w = newWorkers(300 * time.Millisecond)
		first := make(chan struct{})
		w.Go(func() { close(first) })
		<-first
		time.Sleep(20 * time.Millisecond)
		second := make(chan struct{})
		w.Go(func() { close(second) })
		<-second
		reused = w.live.Load() == 1
	}
	if !reused {
		t.Fatal("every second task started a new worker while the first waited")
	}
	if !waitFor(10*time.Second, func() bool { return w.live.Load() == 0 }) {
		t.Fatalf("%d workers still there long after linger", w.live.Load())
	}

	// stopIdle: a worker waiting with a long linger ends at once.
	w = newWorkers(time.Hour)
	done := make(chan struct{})
	w.Go(func() { close(done) })
	<-done
	if !waitFor(10*time.Second, func() bool { w.stopIdle(); return w.live.Load() == 0 }) {
		t.Fatalf("%d workers after stopIdle", w.live.Load())
	}
}
