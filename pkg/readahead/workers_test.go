package readahead

import (
	"sync"
	"testing"
	"time"
)

// TestWorkersNeverQueue: tasks that all block run at once (Go never waits
// for a worker and never queues a task behind a blocked one).
func TestWorkersNeverQueue(t *testing.T) {
	w := newWorkers(time.Minute)
	const n = 20
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(n)
	for range n {
		w.Go(func() {
			started.Done()
			<-release
		})
	}
	waited := make(chan struct{})
	go func() { started.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Fatal("blocked tasks did not all start: Go queued them")
	}
	close(release)
}

// TestWorkersReuseAndExit: the worker of a finished task takes the next
// one, and a worker with nothing to do exits after linger.
func TestWorkersReuseAndExit(t *testing.T) {
	w := newWorkers(200 * time.Millisecond)
	first := make(chan struct{})
	w.Go(func() { close(first) })
	<-first
	// Wait until the worker is idle in its receive, then hand it a task:
	// the non-blocking send succeeds only into an idle worker.
	deadline := time.Now().Add(5 * time.Second)
	reused := false
	for time.Now().Before(deadline) {
		done := make(chan struct{})
		select {
		case w.idle <- func() { close(done) }:
			<-done
			reused = true
		default:
			time.Sleep(time.Millisecond)
			continue
		}
		break
	}
	if !reused {
		t.Fatal("no idle worker took a task after the first finished")
	}
	// After linger with nothing to do, no worker takes a task any more.
	time.Sleep(600 * time.Millisecond)
	select {
	case w.idle <- func() {}:
		t.Error("a worker was still idle after linger")
	default:
	}
}
