package readahead

import (
	"context"
	"sync"
	"time"
)

// fetchLimit bounds how many small objects are fetched at once, and
// moves the bound between its floor and its ceiling the way TCP Vegas
// moves a congestion window.
//
// A fetch is timed from its start to its response's first byte. The
// shortest such time of the last few seconds is the store's own round
// trip (base); a round's mean time above it is time the fetches spent
// queued, on the server or on this node's CPU, and running × (1 −
// base/mean) estimates how many of them were queued rather than on the
// wire. Fewer than queuedLow: the bound rises by one, if the fetches
// filled it (on average at most one place was free); more than
// queuedHigh: it falls by one. A round ends once as many fetches as the
// bound allowed have had their first byte, about one round trip when
// the bound is full; fetches that got no response are not counted, and
// a round left unfinished for baseWindow starts again.
//
// Why: with the store on loopback a small GET is CPU, not a round trip:
// 16 GETs at once each took 5.8 times as long as 4 without more of them
// finishing a second, and a reader of 16 KiB files read 1.13 times as
// many a second with 4 (docs/benchmarks.md, "Small files fetched as
// many at once as the round trip needs"); with a store 20 ms away 16 at
// once are what keeps the reader fed.
//
// Contract: no place is handed out while limit or more are held (after
// the limit falls, the fetches running finish first); acquire waits for
// one in first-come order while ctx lasts; every acquire that returned
// nil is followed by one release; limit stays within [floor, ceiling].
type fetchLimit struct {
	floor, ceiling int

	mu      sync.Mutex
	limit   int
	running int
	waiting []chan struct{} // closed when handed a place, in arrival order

	// The current round: fetches timed, their total time to the first
	// byte, the sum of running at each one's end, and the last one's end.
	roundN       int
	roundSum     time.Duration
	roundRunning int
	roundLast    time.Time

	base baseTime
}

// Vegas' thresholds, in fetches queued rather than on the wire.
const (
	queuedLow  = 2
	queuedHigh = 4
)

// minSmallFetches is the floor of fetchLimit: 4 at once read 16 KiB
// files faster than 16 on loopback (docs/benchmarks.md).
const minSmallFetches = 4

// newFetchLimit returns a limit starting at ceiling; 1 <= floor <=
// ceiling, else it panics (a limit of 0 would never rise again).
func newFetchLimit(floor, ceiling int) *fetchLimit {
	if floor < 1 || ceiling < floor {
		panic("readahead: fetchLimit needs 1 <= floor <= ceiling")
	}
	return &fetchLimit{floor: floor, ceiling: ceiling, limit: ceiling}
}

// acquire waits for a place among the fetches; it returns ctx's error if
// ctx ends first.
func (l *fetchLimit) acquire(ctx context.Context) error {
	l.mu.Lock()
	if l.running < l.limit && len(l.waiting) == 0 {
		l.running++
		l.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	l.waiting = append(l.waiting, ch)
	l.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, w := range l.waiting {
		if w == ch {
			l.waiting = append(l.waiting[:i], l.waiting[i+1:]...)
			return ctx.Err()
		}
	}
	// Handed a place as ctx ended: give it on.
	l.running--
	l.handOn()
	return ctx.Err()
}

// release gives a place back. firstByte is the fetch's time from its
// start to its response's first byte, or 0 when it got no response
// (an error, a cancel), which is not timed.
func (l *fetchLimit) release(firstByte time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if firstByte > 0 {
		l.sample(firstByte, time.Now())
	}
	l.running--
	l.handOn()
}

// handOn gives free places to the fetches waiting longest. Call with
// l.mu held.
func (l *fetchLimit) handOn() {
	for l.running < l.limit && len(l.waiting) > 0 {
		close(l.waiting[0])
		l.waiting = l.waiting[1:]
		l.running++
	}
}

// sample adds one fetch's time to the round and ends the round once it
// has as many as the limit. Call with l.mu held, before running counts
// the fetch out.
func (l *fetchLimit) sample(d time.Duration, now time.Time) {
	l.base.add(d, now)
	if now.Sub(l.roundLast) >= baseWindow {
		l.roundN, l.roundSum, l.roundRunning = 0, 0, 0 // a stale round
	}
	l.roundLast = now
	l.roundN++
	l.roundSum += d
	l.roundRunning += l.running
	if l.roundN < l.limit {
		return
	}
	mean := l.roundSum / time.Duration(l.roundN)
	running := float64(l.roundRunning) / float64(l.roundN)
	queued := running * (1 - float64(l.base.get())/float64(mean))
	switch {
	case queued > queuedHigh && l.limit > l.floor:
		l.limit--
	case queued < queuedLow && l.limit < l.ceiling && running >= float64(l.limit)-1:
		l.limit++
	}
	l.roundN, l.roundSum, l.roundRunning = 0, 0, 0
}

// current returns the bound now.
func (l *fetchLimit) current() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limit
}

// baseTime is the shortest time of the last baseWindow to two baseWindows:
// a store that moved farther away is seen as far within two windows, and
// after a pause of two windows only new times count.
type baseTime struct {
	start     time.Time
	cur, prev time.Duration // 0: no sample
}

const baseWindow = 5 * time.Second

func (b *baseTime) add(d time.Duration, now time.Time) {
	switch gap := now.Sub(b.start); {
	case gap >= 2*baseWindow:
		b.start, b.prev, b.cur = now, 0, 0
	case gap >= baseWindow:
		b.start, b.prev, b.cur = now, b.cur, 0
	}
	if b.cur == 0 || d < b.cur {
		b.cur = d
	}
}

func (b *baseTime) get() time.Duration {
	if b.prev != 0 && b.prev < b.cur {
		return b.prev
	}
	return b.cur
}
