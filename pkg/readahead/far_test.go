package readahead

import (
	"context"
	"io"
	"sync/atomic"
	"testing"
	"time"
)

// farSource serves an object of n zero bytes as a store at a distance
// does: each GET answers after ttfb and delivers its body at perConn
// bytes per second. It records the size of every GET.
type farSource struct {
	n       int64
	ttfb    time.Duration
	perConn float64
	sizes   chan int64
	// firstTTFB, if set, is the first GET's time to first byte instead
	// of ttfb (a near store whose first answer came late).
	firstTTFB time.Duration
	opened    atomic.Int64
}

func (s *farSource) open(ctx context.Context, off, n int64) (io.ReadCloser, error) {
	if s.sizes != nil {
		s.sizes <- n
	}
	ttfb := s.ttfb
	if s.opened.Add(1) == 1 && s.firstTTFB > 0 {
		ttfb = s.firstTTFB
	}
	if ttfb > 0 {
		t := time.NewTimer(ttfb)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return &pacedBody{left: n, rate: s.perConn, start: time.Now()}, nil
}

// requested takes the sizes of the GETs recorded and not yet taken, and
// their sum.
func (s *farSource) requested() (sizes []int64, total int64) {
	for len(s.sizes) > 0 {
		n := <-s.sizes
		sizes = append(sizes, n)
		total += n
	}
	return sizes, total
}

// pacedBody is a GET's body arriving at rate bytes per second.
type pacedBody struct {
	left, sent int64
	rate       float64
	start      time.Time
}

func (p *pacedBody) Read(b []byte) (int, error) {
	if p.left == 0 {
		return 0, io.EOF
	}
	n := min(int64(len(b)), p.left, 256<<10)
	clear(b[:n])
	p.left -= n
	p.sent += n
	time.Sleep(time.Until(p.start.Add(time.Duration(float64(p.sent) / p.rate * float64(time.Second)))))
	return int(n), nil
}

func (p *pacedBody) Close() error { return nil }

// TestReadAtWidensToTheRoundTrip: after its first block, a sequential
// reader of a store whose GETs wait long for their first byte fetches the
// full window of a far store (8 × 8 MiB, twice the default 4 blocks, cut
// to the requests' ends), whether the bytes then come at once or at
// 100 MB/s, as one connection's TCP window per round trip allows (the
// first rule sized the window by that one connection's rate: 2 × 4 MiB;
// the second opened 4 × 8 MiB); one whose GETs answer at once and deliver
// at 50 MB/s doubles its block and its window (2 × 2 MiB).
//
// The widening follows the measured time to first byte over the measured
// transfer time, and a loaded machine stretches both: the far stores wait
// 400 and 100 ms (their 1 MiB must then take under 200 and 50 ms to
// arrive; 20 ms failed once in CI at about 1 ms), and the near one
// delivers slowly enough that an open delayed by up to 40 ms still reads
// as near.
func TestReadAtWidensToTheRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ttfb     time.Duration
		perConn  float64
		min, max int64 // bytes requested by the GETs after the first block
	}{
		{"far away", 400 * time.Millisecond, 1e12, 56 << 20, 64 << 20},
		{"far away, one connection's window per round trip", 100 * time.Millisecond, 100e6, 56 << 20, 64 << 20},
		{"at once", 0, 50e6, 4 << 20, 4 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &farSource{n: 128 << 20, ttfb: tc.ttfb, perConn: tc.perConn, sizes: make(chan int64, 64)}
			r := NewReader(context.Background(), src.open, 0, src.n, Options{})
			defer r.Close()
			p := make([]byte, 1<<20)
			for off := int64(0); off < 2<<20; off += int64(len(p)) {
				_, release, err := r.ReadAt(p, off)
				if err != nil {
					t.Fatal(err)
				}
				release()
			}
			if first := <-src.sizes; first != 1<<20 {
				t.Fatalf("first GET of %d bytes, want one of the first request's size (1 MiB)", first)
			}
			ahead, total := src.requested()
			if total < tc.min || total > tc.max {
				t.Fatalf("after the first block GETs of %v bytes, %d in all; want %d to %d", ahead, total, tc.min, tc.max)
			}
		})
	}
}

// TestReadAtShortSeekAfterTheFarJump: the full window a far store's first
// block opens (TestReadAtWidensToTheRoundTrip) is kept only by a reader
// that goes on in order: one whose next read is a short seek, as random
// reads falling near each other are, fetches what the first block's rate
// alone asked for (2 × 4 MiB here), not 4 × 8 MiB at every such read.
func TestReadAtShortSeekAfterTheFarJump(t *testing.T) {
	src := &farSource{n: 64 << 20, ttfb: 100 * time.Millisecond, perConn: 100e6, sizes: make(chan int64, 64)}
	r := NewReader(context.Background(), src.open, 0, src.n, Options{})
	p := make([]byte, 1<<20)
	for _, off := range []int64{0, 5 << 20} {
		_, release, err := r.ReadAt(p, off)
		if err != nil {
			t.Fatal(err)
		}
		release()
	}
	r.Close()
	if first := <-src.sizes; first != 1<<20 {
		t.Fatalf("first GET of %d bytes, want 1 MiB", first)
	}
	after, total := src.requested()
	if total < 1<<20 || total > 8<<20 {
		t.Fatalf("the read after a short seek made GETs of %v bytes, %d in all; want 1 to 8 MiB", after, total)
	}
}

// TestOnlyAFarStoreWidensTwice: a sequential reader's window grows to
// the default 4 blocks from a store that answers at once and to 8 from
// one whose GETs wait long for their first byte, and the read-ahead
// memory's share of a reader follows: one reader's span is 5 blocks of
// 8 MiB near, 9 far. A near store whose first GET answered late (a busy
// CPU, not a round trip) gets 8 until a GET answers at once, then 4.
func TestOnlyAFarStoreWidensTwice(t *testing.T) {
	for _, tc := range []struct {
		name            string
		ttfb, firstTTFB time.Duration
		perConn         float64 // slow enough near that a late open still reads as near
		widest, window  int
	}{
		{"near", 0, 0, 50e6, 4, 4},
		{"far", 100 * time.Millisecond, 0, 1e12, 8, 8},
		{"near, its first GET late", 0, 400 * time.Millisecond, 50e6, 8, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &farSource{n: 128 << 20, ttfb: tc.ttfb, firstTTFB: tc.firstTTFB, perConn: tc.perConn}
			opt := Options{}.withDefaults()
			mem := newMemory(opt)
			r := newReader(context.Background(), src.open, 0, src.n, opt, mem)
			defer r.Close()
			p := make([]byte, 1<<20)
			widest := 0
			for off := int64(0); off < 48<<20; off += int64(len(p)) {
				_, release, err := r.ReadAt(p, off)
				if err != nil {
					t.Fatal(err)
				}
				release()
				r.mu.Lock()
				widest = max(widest, r.window)
				r.mu.Unlock()
			}
			r.mu.Lock()
			window, far := r.window, r.far
			r.mu.Unlock()
			if widest != tc.widest || window != tc.window {
				t.Fatalf("the window grew to %d blocks and ended at %d, want %d and %d", widest, window, tc.widest, tc.window)
			}
			if share, want := mem.share(far), int64(tc.window+1)*opt.BlockSize; share != want {
				t.Fatalf("one reader's share is %d bytes, want %d", share, want)
			}
		})
	}
}

// BenchmarkReadAtFarStore is the read-ahead's own bound against a store
// 20 ms away whose connections carry 300 MB/s each: a 256 MiB object read
// front to back in 1 MiB requests through ReadAt by a reader that takes no
// time, so the MB/s is what the window's growth and width allow.
func BenchmarkReadAtFarStore(b *testing.B) {
	src := &farSource{n: 256 << 20, ttfb: 20 * time.Millisecond, perConn: 300e6}
	p := make([]byte, 1<<20)
	b.SetBytes(src.n)
	for b.Loop() {
		r := NewReader(context.Background(), src.open, 0, src.n, Options{})
		for off := int64(0); off < src.n; off += int64(len(p)) {
			_, release, err := r.ReadAt(p, off)
			if err != nil {
				b.Fatal(err)
			}
			release()
		}
		r.Close()
	}
}

// TestReadAtServesBytesAsTheyArrive: a read of the first MiB of a block of
// 8 MiB returns once that MiB has arrived, not once the whole block has:
// every GET's body delivers its first MiB and then holds the rest until
// the read has returned (no clock: a loaded machine cannot fail it).
func TestReadAtServesBytesAsTheyArrive(t *testing.T) {
	gate := make(chan struct{})
	open := func(ctx context.Context, off, n int64) (io.ReadCloser, error) {
		return &gatedBody{left: n, free: 1 << 20, gate: gate, ctx: ctx}, nil
	}
	r := NewReader(context.Background(), open, 0, 16<<20, Options{FirstBlock: 8 << 20})
	defer r.Close()
	defer close(gate)
	p := make([]byte, 1<<20)
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		data, release, err := r.ReadAt(p, 0)
		if release != nil {
			release()
		}
		done <- result{len(data), err}
	}()
	select {
	case res := <-done:
		if res.err != nil || res.n != len(p) {
			t.Fatalf("read %d bytes (%v), want %d", res.n, res.err, len(p))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the read of the first MiB waited for the rest of its 8 MiB block")
	}
}

// gatedBody is a GET's body that delivers its first free bytes at once
// and the rest once gate is closed (or ctx ends).
type gatedBody struct {
	left, sent, free int64
	gate             chan struct{}
	ctx              context.Context
}

func (g *gatedBody) Read(b []byte) (int, error) {
	if g.left == 0 {
		return 0, io.EOF
	}
	if g.sent >= g.free {
		select {
		case <-g.gate:
		case <-g.ctx.Done():
			return 0, g.ctx.Err()
		}
	}
	n := min(int64(len(b)), g.left, 256<<10)
	if g.sent < g.free {
		n = min(n, g.free-g.sent)
	}
	clear(b[:n])
	g.left -= n
	g.sent += n
	return int(n), nil
}

func (g *gatedBody) Close() error { return nil }
