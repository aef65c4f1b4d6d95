package copier

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestPoolBoundsAndReuses: at most n tasks run at once, on at most n
// goroutines, and every task runs.
func TestPoolBoundsAndReuses(t *testing.T) {
	const n, tasks = 4, 200
	p, _ := newPool(context.Background(), n)
	var running, peak, done atomic.Int64
	for range tasks {
		p.Go(func() error {
			now := running.Add(1)
			for {
				old := peak.Load()
				if now <= old || peak.CompareAndSwap(old, now) {
					break
				}
			}
			time.Sleep(100 * time.Microsecond)
			running.Add(-1)
			done.Add(1)
			return nil
		})
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	if done.Load() != tasks {
		t.Errorf("%d of %d tasks ran", done.Load(), tasks)
	}
	if peak.Load() > n {
		t.Errorf("%d tasks ran at once, the pool has %d workers", peak.Load(), n)
	}
	if p.started > n {
		t.Errorf("%d workers started for a pool of %d", p.started, n)
	}
}

// TestPoolFirstErrorCancels: the first error cancels the tasks' context
// and is what Wait returns, and the tasks given after it still run (a
// ranged download's last chunk closes its file whatever happened).
func TestPoolFirstErrorCancels(t *testing.T) {
	p, ctx := newPool(context.Background(), 2)
	first := errors.New("first")
	var mu sync.Mutex
	ran := 0
	p.Go(func() error { return first })
	// Wait until the failure cancelled the context: later tasks see it.
	<-ctx.Done()
	for range 5 {
		p.Go(func() error {
			mu.Lock()
			ran++
			mu.Unlock()
			return ctx.Err()
		})
	}
	if err := p.Wait(); !errors.Is(err, first) {
		t.Fatalf("Wait returned %v, want the first error", err)
	}
	if ran != 5 {
		t.Errorf("%d of the 5 tasks given after the failure ran", ran)
	}
}

// TestPoolWaitCancels: Wait cancels the context also when every task
// succeeded, as errgroup.WithContext does.
func TestPoolWaitCancels(t *testing.T) {
	p, ctx := newPool(context.Background(), 3)
	p.Go(func() error { return nil })
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	if ctx.Err() == nil {
		t.Error("the pool's context is still live after Wait")
	}
}

// TestPoolRunsInParallel: n tasks that each wait for all n to have
// started finish: the pool runs n at once, not one after another.
func TestPoolRunsInParallel(t *testing.T) {
	const n = 8
	p, _ := newPool(context.Background(), n)
	var started sync.WaitGroup
	started.Add(n)
	all := make(chan struct{})
	go func() { started.Wait(); close(all) }()
	for range n {
		p.Go(func() error {
			started.Done()
			select {
			case <-all:
				return nil
			case <-time.After(10 * time.Second):
				return errors.New("the other tasks did not start while this one ran")
			}
		})
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
}
