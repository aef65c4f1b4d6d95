package readahead

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// steady keeps the limit's places all held and, n times, lets one fetch
// end after d and another take its place: a reader far enough behind that
// fetches always wait. It returns the lowest and highest limit seen.
func steady(t *testing.T, l *fetchLimit, d time.Duration, n int) (lo, hi int) {
	t.Helper()
	for l.running < l.limit {
		if err := l.acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	lo, hi = l.current(), l.current()
	for i := 0; i < n; i++ {
		l.release(d)
		for l.running < l.limit {
			if err := l.acquire(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		lo, hi = min(lo, l.current()), max(hi, l.current())
	}
	return lo, hi
}

// On loopback the fetches' first bytes come late because they queue for
// the CPU, not because the store is far: the limit falls to its floor
// and stays there.
func TestFetchLimitFallsWhileFetchesQueue(t *testing.T) {
	l := newFetchLimit(4, 16)
	steady(t, l, time.Millisecond, 16) // the store's own round trip
	lo, _ := steady(t, l, 6*time.Millisecond, 400)
	if lo != 4 || l.current() != 4 {
		t.Fatalf("limit %d (lowest %d) after 400 queued fetches, want the floor 4", l.current(), lo)
	}
	// At 4, 4 × (1 − 1/6) = 3.3 fetches queue: between the thresholds.
	if lo, hi := steady(t, l, 6*time.Millisecond, 100); lo != 4 || hi != 4 {
		t.Fatalf("limit moved between %d and %d at its floor, want 4", lo, hi)
	}
}

// With the store 20 ms away the first bytes take the round trip whatever
// the number of fetches: the limit rises to its ceiling and stays there.
func TestFetchLimitRisesForAFarStore(t *testing.T) {
	l := newFetchLimit(4, 16)
	l.limit = 4
	steady(t, l, 20*time.Millisecond, 4)
	_, hi := steady(t, l, 21*time.Millisecond, 400)
	if hi != 16 || l.current() != 16 {
		t.Fatalf("limit %d (highest %d) after 400 fetches on the wire, want the ceiling 16", l.current(), hi)
	}
}

// A reader that keeps one fetch running at a time does not raise the
// limit: places it does not fill say nothing about whether more would
// help.
func TestFetchLimitRisesOnlyWhenFilled(t *testing.T) {
	l := newFetchLimit(4, 16)
	l.limit = 4
	for i := 0; i < 100; i++ {
		if err := l.acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
		l.release(time.Millisecond)
	}
	if got := l.current(); got != 4 {
		t.Fatalf("limit %d after 100 fetches one at a time, want 4", got)
	}
}

// A fetch waits for a place in arrival order; one whose context ends
// while it waits takes none, and one handed a place as its context ended
// gives it on.
func TestFetchLimitWaitsInOrderAndCancels(t *testing.T) {
	l := newFetchLimit(1, 1)
	if err := l.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.acquire(ctx); err == nil {
		t.Fatal("acquire with an ended context and no place free returned nil")
	}
	var order []int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.acquire(context.Background()); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			l.release(0)
		}()
		// Each waits before the next arrives.
		for {
			l.mu.Lock()
			n := len(l.waiting)
			l.mu.Unlock()
			if n == i+1 {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	l.release(0)
	wg.Wait()
	if len(order) != 3 || order[0] != 0 || order[1] != 1 || order[2] != 2 {
		t.Fatalf("places went to %v, want [0 1 2]", order)
	}
	if l.running != 0 || len(l.waiting) != 0 {
		t.Fatalf("%d running, %d waiting after every fetch ended", l.running, len(l.waiting))
	}
}

// Under -race: fetches that come, wait, give up and end at random never
// run more at once than the ceiling, and every place comes back.
func TestFetchLimitConcurrent(t *testing.T) {
	l := newFetchLimit(2, 8)
	var now, most atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(j%3)*100*time.Microsecond)
				if err := l.acquire(ctx); err != nil {
					cancel()
					continue
				}
				n := now.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				time.Sleep(time.Duration(i%4) * 50 * time.Microsecond)
				now.Add(-1)
				l.release(time.Duration(1+i%5) * time.Millisecond)
				cancel()
			}
		}()
	}
	wg.Wait()
	if most.Load() > 8 {
		t.Fatalf("%d fetches ran at once, ceiling 8", most.Load())
	}
	if l.running != 0 || len(l.waiting) != 0 {
		t.Fatalf("%d running, %d waiting after every fetch ended", l.running, len(l.waiting))
	}
	if c := l.current(); c < 2 || c > 8 {
		t.Fatalf("limit %d outside [2, 8]", c)
	}
}

// The base time forgets a sample after two windows: a store that moved
// farther away is seen as far.
func TestBaseTimeForgets(t *testing.T) {
	var b baseTime
	t0 := time.Now()
	b.add(time.Millisecond, t0)
	b.add(20*time.Millisecond, t0.Add(baseWindow))
	if got := b.get(); got != time.Millisecond {
		t.Fatalf("base %v one window on, want 1ms", got)
	}
	b.add(21*time.Millisecond, t0.Add(2*baseWindow))
	if got := b.get(); got != 20*time.Millisecond {
		t.Fatalf("base %v two windows on, want 20ms", got)
	}
	// After a pause of two windows, only what comes after it counts.
	b.add(30*time.Millisecond, t0.Add(5*baseWindow))
	if got := b.get(); got != 30*time.Millisecond {
		t.Fatalf("base %v after a pause, want 30ms", got)
	}
}

// A limit that fell holds back new fetches until the running ones are
// fewer than it.
func TestFetchLimitLoweredHoldsBack(t *testing.T) {
	l := newFetchLimit(4, 16)
	for i := 0; i < 16; i++ {
		if err := l.acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	l.mu.Lock()
	l.limit = 4
	l.mu.Unlock()
	try := func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		defer cancel()
		if l.acquire(ctx) != nil {
			return false
		}
		l.release(0)
		return true
	}
	for running := 16; running > 3; running-- {
		if try() {
			t.Fatalf("a fetch got a place with %d running and the limit at 4", running)
		}
		l.release(0)
	}
	if !try() {
		t.Fatal("no place with 3 running and the limit at 4")
	}
}

// A fetch handed a place just as its context ends gives the place on.
func TestFetchLimitCancelRacesHandOn(t *testing.T) {
	l := newFetchLimit(1, 1)
	for i := 0; i < 20; i++ {
		if err := l.acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		got := make(chan error)
		go func() { got <- l.acquire(ctx) }()
		for {
			l.mu.Lock()
			n := len(l.waiting)
			l.mu.Unlock()
			if n == 1 {
				break
			}
			time.Sleep(10 * time.Microsecond)
		}
		// The waiter sees its context end and then waits for mu, which
		// this release holds while it hands the waiter the place.
		l.mu.Lock()
		cancel()
		time.Sleep(time.Millisecond)
		l.running--
		l.handOn()
		l.mu.Unlock()
		if err := <-got; err == nil {
			t.Fatal("acquire returned nil after its context ended first")
		}
		l.mu.Lock()
		running, waiting := l.running, len(l.waiting)
		l.mu.Unlock()
		if running != 0 || waiting != 0 {
			t.Fatalf("round %d: %d running, %d waiting after the waiter gave up", i, running, waiting)
		}
	}
}

// BenchmarkFetchLimit: a place taken and given back by goroutines in
// parallel, against the channel of 16 places it replaced (the baseline).
func BenchmarkFetchLimit(b *testing.B) {
	b.Run("channel", func(b *testing.B) {
		sem := make(chan struct{}, smallFetches)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				sem <- struct{}{}
				<-sem
			}
		})
	})
	b.Run("fetchLimit", func(b *testing.B) {
		l := newFetchLimit(minSmallFetches, smallFetches)
		ctx := context.Background()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := l.acquire(ctx); err != nil {
					b.Error(err)
					return
				}
				l.release(time.Millisecond)
			}
		})
	})
}
