package readahead

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
)

// source is an in-memory object that records the ranges requested.
type source struct {
	data   []byte
	mu     sync.Mutex
	ranges [][2]int64
	fail   atomic.Int64 // offset whose GET fails (-1: none)
	active atomic.Int64
	peak   atomic.Int64
}

func newSource(n int) *source {
	s := &source{data: make([]byte, n)}
	r := rand.New(rand.NewPCG(7, 8))
	for i := range s.data {
		s.data[i] = byte(r.Uint32())
	}
	s.fail.Store(-1)
	return s
}

func (s *source) open(ctx context.Context, off, n int64) (io.ReadCloser, error) {
	s.mu.Lock()
	s.ranges = append(s.ranges, [2]int64{off, n})
	s.mu.Unlock()
	if off == s.fail.Load() {
		return nil, errors.New("injected failure")
	}
	if a := s.active.Add(1); a > s.peak.Load() {
		s.peak.Store(a)
	}
	defer s.active.Add(-1)
	return io.NopCloser(bytes.NewReader(s.data[off : off+n])), ctx.Err()
}

func TestReaderReadsExactRanges(t *testing.T) {
	src := newSource(50<<20 + 12345)
	opt := Options{Window: 4, BlockSize: 4 << 20, FirstBlock: 64 << 10}
	for _, tc := range []struct{ start, end int64 }{
		{0, int64(len(src.data))},
		{1, 2},
		{12345, 9 << 20},
		{int64(len(src.data)) - 10, int64(len(src.data))},
	} {
		r := NewReader(context.Background(), src.open, tc.start, tc.end, opt)
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatalf("[%d,%d): %v", tc.start, tc.end, err)
		}
		if !bytes.Equal(got, src.data[tc.start:tc.end]) {
			t.Fatalf("[%d,%d): data differs (%d bytes read)", tc.start, tc.end, len(got))
		}
	}
}

func TestReaderStartsSmallThenWidens(t *testing.T) {
	src := newSource(40 << 20)
	opt := Options{Window: 4, BlockSize: 4 << 20, FirstBlock: 64 << 10}
	r := NewReader(context.Background(), src.open, 0, int64(len(src.data)), opt)
	if _, err := r.Read(make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	src.mu.Lock()
	first := append([][2]int64(nil), src.ranges...)
	src.mu.Unlock()
	// A random read (one small read, then close) costs one small GET.
	if len(first) != 1 || first[0] != [2]int64{0, 64 << 10} {
		t.Fatalf("first GETs %v, want one of 64 KiB at 0", first)
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if len(r.queue) != 0 {
		t.Fatalf("queue not empty after close")
	}
	if w := r.window; w != 4 {
		t.Fatalf("window %d after a sequential read, want 4", w)
	}
	// Blocks double from FirstBlock to BlockSize, in order, no gaps.
	sort.Slice(src.ranges, func(i, j int) bool { return src.ranges[i][0] < src.ranges[j][0] })
	want, off := int64(64<<10), int64(0)
	for _, rg := range src.ranges {
		if rg[0] != off || (rg[1] != want && rg[0]+rg[1] != int64(len(src.data))) {
			t.Fatalf("block %v, want %d bytes at %d (all: %v)", rg, want, off, src.ranges)
		}
		off += rg[1]
		want = min(want*2, 4<<20)
	}
	if p := src.peak.Load(); p > 4 {
		t.Fatalf("%d GETs at once, window is 4", p)
	}
}

func TestReaderFirstBlockCoversTheFirstRead(t *testing.T) {
	src := newSource(40 << 20)
	r := NewReader(context.Background(), src.open, 5<<20, int64(len(src.data)), Options{FirstBlock: 64 << 10})
	defer r.Close()
	buf := make([]byte, 1<<20)
	if _, err := io.ReadFull(r, buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, src.data[5<<20:6<<20]) {
		t.Fatal("data differs")
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	if len(src.ranges) != 1 || src.ranges[0] != [2]int64{5 << 20, 1 << 20} {
		t.Fatalf("GETs %v, want one of 1 MiB for a 1 MiB read", src.ranges)
	}
}

func TestReaderReportsFailedBlock(t *testing.T) {
	src := newSource(20 << 20)
	src.fail.Store(64<<10 + 128<<10) // the third block
	r := NewReader(context.Background(), src.open, 0, int64(len(src.data)), Options{Window: 2, BlockSize: 4 << 20, FirstBlock: 64 << 10})
	defer r.Close()
	n, err := io.Copy(io.Discard, r)
	if err == nil || n != 64<<10+128<<10 {
		t.Fatalf("read %d bytes, err %v; want the bytes before the failed block and its error", n, err)
	}
	if _, err2 := r.Read(make([]byte, 1)); err2 == nil {
		t.Fatal("a read after a failure succeeded")
	}
}

func TestReaderShortObjectIsAnError(t *testing.T) {
	short := func(ctx context.Context, off, n int64) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(make([]byte, n-1))), nil
	}
	r := NewReader(context.Background(), short, 0, 1000, Options{})
	defer r.Close()
	if _, err := io.ReadAll(r); err == nil {
		t.Fatal("a short GET was not reported")
	}
}

func TestReaderCloseCancelsFetches(t *testing.T) {
	started := make(chan struct{}, 8)
	blocking := func(ctx context.Context, off, n int64) (io.ReadCloser, error) {
		started <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := NewReader(ctx, blocking, 0, 1<<30, Options{})
	read := make(chan error)
	go func() { _, err := r.Read(make([]byte, 1)); read <- err }()
	<-started
	cancel() // the caller's context ends: the blocked GET and the Read end
	if err := <-read; err == nil {
		t.Fatal("Read succeeded after its context ended")
	}
	r.Close() // returns only once the GET has ended
}

// BenchmarkReader is the read path's own cost: a 256 MiB object from
// memory through Reader in 128 KiB reads (the FUSE read size).
func BenchmarkReader(b *testing.B) {
	src := newSource(256 << 20)
	buf := make([]byte, 128<<10)
	for _, opt := range []Options{{Window: 1}, {Window: 4}, {Window: 8, BlockSize: 16 << 20}} {
		b.Run(optName(opt), func(b *testing.B) {
			b.SetBytes(int64(len(src.data)))
			b.ReportAllocs()
			for b.Loop() {
				r := NewReader(context.Background(), src.open, 0, int64(len(src.data)), opt)
				if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{r}, buf); err != nil {
					b.Fatal(err)
				}
				r.Close()
			}
		})
	}
}

func optName(o Options) string {
	o = o.withDefaults()
	return fmt.Sprintf("window=%d,block=%dMiB", o.Window, o.BlockSize>>20)
}
