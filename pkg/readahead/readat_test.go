package readahead

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// requests returns the offsets of a file read front to back in size
// requests, each group of reorder requests arriving in reverse, as
// concurrent FUSE requests may.
func requests(total, size int64, reorder int) []int64 {
	var offs []int64
	for off := int64(0); off < total; off += size {
		offs = append(offs, off)
	}
	for i := 0; i+reorder <= len(offs); i += reorder {
		for a, b := i, i+reorder-1; a < b; a, b = a+1, b-1 {
			offs[a], offs[b] = offs[b], offs[a]
		}
	}
	return offs
}

func TestReadAtServesLateRequestsWithoutRefetching(t *testing.T) {
	for _, reorder := range []int{1, 2, 4} {
		src := newSource(40<<20 + 4321)
		opt := Options{Window: 4, BlockSize: 4 << 20, FirstBlock: 64 << 10}
		r := NewReader(context.Background(), src.open, 0, int64(len(src.data)), opt)
		got := make([]byte, len(src.data))
		p := make([]byte, 128<<10)
		for _, off := range requests(int64(len(src.data)), int64(len(p)), reorder) {
			data, release, err := r.ReadAt(p, off)
			if err != nil {
				t.Fatalf("reorder %d: ReadAt(%d): %v", reorder, off, err)
			}
			copy(got[off:], data)
			release()
		}
		r.Close()
		if !bytes.Equal(got, src.data) {
			t.Fatalf("reorder %d: data differs", reorder)
		}
		// Every byte fetched once: a late request finds its block kept.
		var fetched int64
		for _, rg := range src.ranges {
			fetched += rg[1]
		}
		if fetched != int64(len(src.data)) {
			t.Fatalf("reorder %d: fetched %d bytes for a %d byte object (%d GETs)", reorder, fetched, len(src.data), len(src.ranges))
		}
		if r.window != 4 {
			t.Fatalf("reorder %d: window %d after a sequential read, want 4", reorder, r.window)
		}
		if now, _ := r.mem.held(); now-r.mem.kept != 0 {
			t.Fatalf("reorder %d: %d bytes still counted as used after Close", reorder, now-r.mem.kept)
		}
	}
}

func TestReadAtHeldDataOutlivesTheWindow(t *testing.T) {
	src := newSource(64 << 20)
	opt := Options{Window: 2, BlockSize: 1 << 20, FirstBlock: 1 << 20}
	r := NewReader(context.Background(), src.open, 0, int64(len(src.data)), opt)
	defer r.Close()
	p := make([]byte, 64<<10)
	held, release, err := r.ReadAt(p, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if &held[0] == &p[0] {
		t.Fatal("a read inside one block was copied")
	}
	// Read on far past it: its block leaves the window and buffers are
	// reused for later blocks; the held bytes must not change.
	for off := int64(1 << 20); off < int64(len(src.data)); off += int64(len(p)) {
		_, rel, err := r.ReadAt(p, off)
		if err != nil {
			t.Fatal(err)
		}
		rel()
	}
	if !bytes.Equal(held, src.data[4096:4096+len(p)]) {
		t.Fatal("held data was overwritten before its release")
	}
	release()
}

func TestReadAtAcrossBlocksAndAtTheEnd(t *testing.T) {
	src := newSource(3<<20 + 100)
	opt := Options{Window: 2, BlockSize: 1 << 20, FirstBlock: 1 << 20}
	r := NewReader(context.Background(), src.open, 0, int64(len(src.data)), opt)
	defer r.Close()
	p := make([]byte, 1<<20)
	for _, off := range []int64{0, 512 << 10, 3 << 20, 3<<20 + 50} {
		data, release, err := r.ReadAt(p, off)
		if err != nil {
			t.Fatalf("ReadAt(%d): %v", off, err)
		}
		want := src.data[off:min(off+int64(len(p)), int64(len(src.data)))]
		if !bytes.Equal(data, want) {
			t.Fatalf("ReadAt(%d): %d bytes, data differs from the %d wanted", off, len(data), len(want))
		}
		release()
	}
	if _, _, err := r.ReadAt(p, int64(len(src.data))); err != io.EOF {
		t.Fatalf("ReadAt at the end: %v, want io.EOF", err)
	}
}

func TestReadAtRandomReadCostsOneGET(t *testing.T) {
	src := newSource(256 << 20)
	r := NewReader(context.Background(), src.open, 0, int64(len(src.data)), Options{})
	defer r.Close()
	p := make([]byte, 1<<20)
	rnd := rand.New(rand.NewPCG(1, 2))
	const reads = 20
	for range reads {
		off := rnd.Int64N(int64(len(src.data))/int64(len(p))) * int64(len(p))
		data, release, err := r.ReadAt(p, off)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, src.data[off:off+int64(len(p))]) {
			t.Fatalf("ReadAt(%d): data differs", off)
		}
		release()
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	if len(src.ranges) > reads {
		t.Fatalf("%d GETs for %d random 1 MiB reads: %v", len(src.ranges), reads, src.ranges)
	}
	for _, rg := range src.ranges {
		if rg[1] != 1<<20 {
			t.Fatalf("a random 1 MiB read fetched %d bytes (all: %v)", rg[1], src.ranges)
		}
	}
}

func TestReadAtReportsFailedBlock(t *testing.T) {
	src := newSource(8 << 20)
	src.fail.Store(1 << 20)
	r := NewReader(context.Background(), src.open, 0, int64(len(src.data)), Options{Window: 2, BlockSize: 1 << 20, FirstBlock: 1 << 20})
	defer r.Close()
	p := make([]byte, 1<<20)
	if _, release, err := r.ReadAt(p, 0); err != nil {
		t.Fatal(err)
	} else {
		release()
	}
	if _, _, err := r.ReadAt(p, 1<<20); err == nil {
		t.Fatal("the failed block's read succeeded")
	}
}

// TestReadAtConcurrentRequestsOverlap: concurrent ReadAt calls wait for
// their blocks without the Reader's lock, so their GETs overlap, and each
// gets its own bytes although every call moves the window away from the
// blocks the others wait for.
func TestReadAtConcurrentRequestsOverlap(t *testing.T) {
	src := newSource(16 << 20)
	var active, peak atomic.Int64
	slow := func(ctx context.Context, off, n int64) (io.ReadCloser, error) {
		a := active.Add(1)
		for p := peak.Load(); a > p && !peak.CompareAndSwap(p, a); p = peak.Load() {
		}
		time.Sleep(20 * time.Millisecond)
		active.Add(-1)
		return src.open(ctx, off, n)
	}
	r := NewReader(context.Background(), slow, 0, int64(len(src.data)), Options{FirstBlock: 1 << 20, BlockSize: 1 << 20, Window: 1})
	defer r.Close()
	// Four threads of a random reader, 4 MiB apart: each read moves the
	// window away from the blocks the others wait for.
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for _, off := range []int64{0, 4 << 20, 8 << 20, 12 << 20} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data, release, err := r.ReadAt(make([]byte, 64<<10), off)
			if err == nil && !bytes.Equal(data, src.data[off:off+64<<10]) {
				err = errors.New("data differs")
			}
			if err != nil {
				errs <- fmt.Errorf("ReadAt(%d): %w", off, err)
			}
			release()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if p := peak.Load(); p < 2 {
		t.Fatalf("at most %d GET at once: concurrent reads waited for each other", p)
	}
}

// TestReadAtKernelRequestsInsideBlocks reads as the kernel does with a
// 1 MiB read-ahead (32, 128, 256 and 512 KiB, then 1 MiB requests, none
// aligned to a MiB): once the blocks are grown, every request lies inside
// one block and is answered from it, not copied.
func TestReadAtKernelRequestsInsideBlocks(t *testing.T) {
	src := newSource(64 << 20)
	r := NewReader(context.Background(), src.open, 0, int64(len(src.data)), Options{})
	defer r.Close()
	reqs := [][2]int64{{0, 32 << 10}, {32 << 10, 128 << 10}, {160 << 10, 256 << 10}, {416 << 10, 512 << 10}}
	for off := int64(928 << 10); off < int64(len(src.data)); off += 1 << 20 {
		reqs = append(reqs, [2]int64{off, min(1<<20, int64(len(src.data))-off)})
	}
	for _, q := range reqs {
		p := make([]byte, q[1])
		data, release, err := r.ReadAt(p, q[0])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, src.data[q[0]:q[0]+q[1]]) {
			t.Fatalf("request at %d: data differs", q[0])
		}
		if copied := &data[0] == &p[0]; copied && q[0] > 16<<20 {
			t.Errorf("request at %d (+%d) straddles two blocks: copied", q[0], q[1])
		}
		release()
	}
}

// TestReadersShareTheBudget: four sequential readers of one budget each
// fetch no more than an even share of it ahead, so none is left without
// read-ahead
// (before, the first readers' windows took it all and the last read with
// one GET per request).
func TestReadersShareTheBudget(t *testing.T) {
	src := newSource(64 << 20)
	opt := Options{MemoryLimit: 32 << 20}.withDefaults()
	mem := newMemory(opt)
	var readers []*Reader
	for i := range 4 {
		r := newReader(context.Background(), src.open, int64(i)*16<<20, int64(len(src.data)), opt, mem)
		defer r.Close()
		readers = append(readers, r)
	}
	share := mem.share(false)
	if share != 8<<20 {
		t.Fatalf("share of 4 readers of 32 MiB is %d", share)
	}
	for step := int64(0); step < 12<<20; step += 1 << 20 {
		for i, r := range readers {
			off := int64(i)*16<<20 + step
			data, release, err := r.ReadAt(make([]byte, 1<<20), off)
			if err != nil || !bytes.Equal(data, src.data[off:off+1<<20]) {
				t.Fatalf("reader %d at %d: err %v, equal %v", i, off, err, bytes.Equal(data, src.data[off:off+1<<20]))
			}
			release()
			r.mu.Lock()
			ahead := r.next - r.pos
			r.mu.Unlock()
			if ahead > share {
				t.Errorf("reader %d fetches %d bytes ahead, more than its share %d", i, ahead, share)
			}
		}
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	for _, g := range src.ranges {
		if g[1] < 256<<10 {
			t.Errorf("a %d-byte GET at %d: a reader found no room for a block", g[1], g[0])
		}
	}
}

// TestManyReadersFetchLittlePastTheirParts: sixteen readers, each reading
// its own sixteenth of a file as the bench's ParallelRead does, share one
// reader's span between them, so what they fetch past the ends of their
// parts stays within a block each. Before, each kept a window of its own
// ahead, and a reader that stopped at the end of its part left its whole
// window (four blocks) fetched and never read.
func TestManyReadersFetchLittlePastTheirParts(t *testing.T) {
	const readers, part, request = 16, 4 << 20, 256 << 10
	src := newSource(readers * part)
	opt := Options{BlockSize: 1 << 20}.withDefaults()
	mem := newMemory(opt)
	var rs []*Reader
	for i := range readers {
		rs = append(rs, newReader(context.Background(), src.open, int64(i)*part, int64(len(src.data)), opt, mem))
	}
	for step := int64(0); step < part; step += request {
		for i, r := range rs {
			off := int64(i)*part + step
			data, release, err := r.ReadAt(make([]byte, request), off)
			if err != nil || !bytes.Equal(data, src.data[off:off+request]) {
				t.Fatalf("reader %d at %d: err %v, equal %v", i, off, err, bytes.Equal(data, src.data[off:off+request]))
			}
			release()
		}
	}
	for _, r := range rs {
		r.Close()
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	var fetched int64
	for _, g := range src.ranges {
		fetched += g[1]
	}
	past := fetched - readers*part
	t.Logf("%d readers of %d bytes each fetched %d bytes past their parts", readers, part, past)
	if past > readers*opt.BlockSize {
		t.Errorf("%d readers of %d bytes each fetched %d bytes past their parts, more than a %d-byte block each",
			readers, part, past, opt.BlockSize)
	}
}

// TestMappedBuffersGoBack: blocks of 2 MiB and more are mapped outside
// the heap (pages.go), so each must be unmapped once nothing refers to
// it. Eight readers share one budget, read with replies held and let go
// late, jump, and close with GETs in flight; every byte is right and,
// once all are closed and the kept buffers trimmed, nothing is mapped.
func TestMappedBuffersGoBack(t *testing.T) {
	src := newSource(32 << 20)
	opt := Options{MemoryLimit: 48 << 20, BlockSize: 4 << 20, Window: 4}.withDefaults()
	mem := newMemory(opt)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := newReader(context.Background(), src.open, 0, int64(len(src.data)), opt, mem)
			defer r.Close()
			var held []func()
			var offs []int64
			for off := int64(g) << 20; off < int64(g+12)<<20; off += 1 << 20 {
				offs = append(offs, off)
			}
			offs = append(offs, 24<<20+int64(g)<<10, 4<<20) // a jump, and back

			for _, off := range offs {
				data, release, err := r.ReadAt(make([]byte, 1<<20), off)
				if err == nil && !bytes.Equal(data, src.data[off:off+int64(len(data))]) {
					err = errors.New("data differs")
				}
				if err != nil {
					errs <- fmt.Errorf("reader %d at %d: %w", g, off, err)
					return
				}
				held = append(held, release)
				if len(held) > 3 {
					held[0]()
					held = held[1:]
				}
			}
			for _, release := range held {
				release()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	mem.trim()
	mem.mu.Lock()
	defer mem.mu.Unlock()
	if mem.mapped != 0 || mem.used != 0 {
		t.Fatalf("after every reader closed and trim: %d bytes still mapped, %d used", mem.mapped, mem.used)
	}
}

// BenchmarkReadAt is ReadAt's own cost, the FUSE server's MOUNT read
// path: a 256 MiB object from memory in 1 MiB requests, pairs swapped.
func BenchmarkReadAt(b *testing.B) {
	src := newSource(256 << 20)
	p := make([]byte, 1<<20)
	offs := requests(int64(len(src.data)), int64(len(p)), 2)
	b.SetBytes(int64(len(src.data)))
	b.ReportAllocs()
	for b.Loop() {
		r := NewReader(context.Background(), src.open, 0, int64(len(src.data)), Options{})
		for _, off := range offs {
			_, release, err := r.ReadAt(p, off)
			if err != nil {
				b.Fatal(err)
			}
			release()
		}
		r.Close()
	}
}
