// Package readahead makes streaming (MOUNT) reads fast without making
// random reads slow. It wraps an rclone fs.Fs so that every object the
// VFS reads is fetched by a Reader: ranged GETs in parallel ahead of a
// sequential reader, in a window that starts with one small request (a
// random read costs one short GET) and grows while the reads stay
// sequential. It also fetches small objects ahead of a reader that opens
// them one after another in listing order (see Fs).
//
// Memory is bounded: a Reader holds at most Window blocks of BlockSize
// (twice that from a far store, whose round trip needs more in flight);
// small-object prefetch holds at most Options.SmallBudget bytes per Fs;
// and everything one Fs holds (its readers' blocks, the buffers it keeps
// for reuse, its small files) stays within Options.MemoryLimit. Readers
// that find the limit reached slow down instead of allocating: they fetch
// less ahead, and with nothing ahead read straight into the caller's
// buffer, so a reader always makes progress and nobody waits for memory.
package readahead

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// Options tune the read path. Zero values take the defaults.
type Options struct {
	// Window is the most blocks fetched at once by one Reader (4), or
	// farWidth times that from a far store (see Reader.widen).
	Window int
	// BlockSize is the size of one ranged GET once a read is
	// sequential (8 MiB).
	BlockSize int64
	// FirstBlock is the size of the first GET after an open or a seek,
	// kept small so random reads stay cheap (256 KiB); each block read to
	// its end doubles the next one up to BlockSize, then the window grows.
	FirstBlock int64
	// SmallMax is the largest object fetched ahead as a small file
	// (256 KiB); 0 takes the default, negative turns prefetch off.
	SmallMax int64
	// SmallAhead is how many small files are fetched ahead (32).
	SmallAhead int
	// SmallBudget bounds the bytes of small files held (32 MiB).
	SmallBudget int64
	// MemoryLimit bounds the bytes one Fs holds for reads, shared by all
	// its readers and its small-file prefetch (256 MiB); negative holds
	// none (every read goes to the store).
	MemoryLimit int64
	// SmallFilesOnly keeps only the small-file prefetch: Open hands every
	// read no prefetch holds to the wrapped object as asked, with no
	// Reader of this package. For a caller that reads ranges its own way,
	// rclone's VFS cache (MOUNT_CACHED), where a Reader would fetch far
	// past a random read. OpenAt (MOUNT's path) is not affected.
	SmallFilesOnly bool
	// StatAhead looks up ahead the mtimes of objects statted in name
	// order (see statAhead): for stores where an object's mtime costs a
	// request (rclone's Features.SlowModTime, without
	// --use-server-modtime).
	StatAhead bool
}

// DefaultMemoryLimit is the default Options.MemoryLimit.
const DefaultMemoryLimit = 256 << 20

func (o Options) withDefaults() Options {
	if o.Window <= 0 {
		o.Window = 4
	}
	if o.BlockSize <= 0 {
		o.BlockSize = 8 << 20
	}
	if o.FirstBlock <= 0 {
		o.FirstBlock = 256 << 10
	}
	o.FirstBlock = min(o.FirstBlock, o.BlockSize)
	if o.SmallMax == 0 {
		o.SmallMax = 256 << 10
	}
	if o.SmallAhead <= 0 {
		o.SmallAhead = 32
	}
	if o.SmallBudget <= 0 {
		o.SmallBudget = 32 << 20
	}
	if o.MemoryLimit == 0 {
		o.MemoryLimit = DefaultMemoryLimit
	}
	return o
}

// RangeOpener opens n bytes of an object at off (n > 0).
type RangeOpener func(ctx context.Context, off, n int64) (io.ReadCloser, error)

// Reader reads [start, end) of an object through parallel ranged GETs.
// It is used either as an io.ReadCloser by one goroutine, or through
// ReadAt by many at once; Close cancels the GETs in flight and waits for
// them.
type Reader struct {
	mu     sync.Mutex // serializes ReadAt's calls but for their waits
	ctx    context.Context
	cancel context.CancelFunc
	open   RangeOpener
	opt    Options
	mem    *memory
	pos    int64 // next byte Read returns; with ReadAt, the furthest read
	reqEnd int64 // end of the latest ReadAt request; 0 with Read
	next   int64 // first byte not yet scheduled
	end    int64
	size   int64    // size of the next block; doubles to opt.BlockSize
	window int      // blocks allowed in flight now; grows to maxWindow
	queue  []*block // scheduled blocks in offset order
	wg     sync.WaitGroup
	err    error
	closed bool
	hits   *Hits // nil: not counted
	// jumped is set while the window is open at its full width on one
	// block's evidence (widen, at a far store); a short move then returns
	// to slowSize and slowWindow, what that block's rate alone asked for.
	jumped     bool
	slowSize   int64
	slowWindow int
	// far is set while the blocks show the store far (see widen): the
	// window may then hold farWidth times opt.Window blocks. minTTFB is
	// the shortest time to first byte of the blocks widen has seen (0
	// before the first).
	far     bool
	minTTFB time.Duration
}

// maxWindow is the most blocks the window may hold: opt.Window, or
// farWidth times that from a far store.
func (r *Reader) maxWindow() int {
	if r.far {
		return farWidth * r.opt.Window
	}
	return r.opt.Window
}

type block struct {
	owners twoOwners // the Reader and the fetch
	off    int64
	buf    []byte
	read   int // bytes of buf already returned
	// counted is set once the block's hit or miss is recorded.
	counted bool
	// ended is set once ReadAt has read the block to its end; waiters
	// counts the ReadAt calls waiting for it (both under Reader.mu).
	ended   bool
	waiters int
	done    chan struct{}
	err     error
	cancel  context.CancelFunc
	// ttfb is how long the GET took to answer, xfer how long its body
	// took to arrive; both are set before the whole block has arrived.
	ttfb, xfer time.Duration
	// arrival makes the block's bytes readable as they arrive.
	arrival arrival
}

// arrival is how much of a block's GET has arrived: a read that needs the
// first bytes of a block of 8 MiB waits for those, not for all of it.
type arrival struct {
	mu      sync.Mutex
	arrived int           // bytes of the block's buffer filled, from its start
	wake    chan struct{} // closed and replaced whenever arrived grows
}

// arrivalStep is how many bytes arrive between two wake-ups of readers
// waiting for a block.
const arrivalStep = 256 << 10

// advance records that the first n bytes of the block have arrived.
func (a *arrival) advance(n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.arrived = n
	close(a.wake)
	a.wake = make(chan struct{})
}

// state returns the bytes arrived and the channel closed when more do.
func (a *arrival) state() (int, <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.arrived, a.wake
}

// NewReader returns a Reader of [start, end) fetched with open, holding
// at most opt.MemoryLimit bytes.
func NewReader(ctx context.Context, open RangeOpener, start, end int64, opt Options) *Reader {
	opt = opt.withDefaults()
	return newReader(ctx, open, start, end, opt, newMemory(opt))
}

// newReader returns a Reader whose blocks count against mem; opt has its
// defaults.
func newReader(ctx context.Context, open RangeOpener, start, end int64, opt Options, mem *memory) *Reader {
	ctx, cancel := context.WithCancel(ctx)
	mem.readers.Add(1)
	return &Reader{ctx: ctx, cancel: cancel, open: open, opt: opt, mem: mem, pos: start, next: start, end: end, window: 1, size: opt.FirstBlock}
}

// Read returns the next bytes in order; it blocks until the block holding
// them has arrived.
func (r *Reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.pos >= r.end {
		return 0, io.EOF
	}
	if len(r.queue) == 0 && r.window == 1 {
		// After an open or a seek, fetch at least what this read asks
		// for in one GET (a random 1 MiB read is one request).
		r.size = max(r.size, min(classOf(int64(len(p))), r.opt.BlockSize))
	}
	r.fill(0)
	if len(r.queue) == 0 {
		return r.readDirect(p)
	}
	b := r.queue[0]
	if err := r.wait(b); err != nil {
		return 0, err
	}
	n := copy(p, b.buf[b.read:])
	b.read += n
	r.pos += int64(n)
	if b.read == len(b.buf) {
		r.queue = r.queue[1:]
		r.letGo(b)
		r.grow()
	}
	return n, nil
}

// grow records a block read to its end: the reader is sequential. The
// blocks grow first, then the window, so a short read after a seek
// fetches little.
func (r *Reader) grow() {
	r.jumped = false
	if r.size < r.opt.BlockSize {
		r.size = min(r.size*2, r.opt.BlockSize)
	} else {
		r.window = min(r.window*2, r.maxWindow())
	}
}

// fill schedules blocks until the window is full, the range is, the
// Reader's share of the memory budget is (memory.share), or the budget
// is. The first behind blocks of the queue (kept for late requests, see
// ReadAt) count against the share but not the window; the first block
// ahead of them is always allowed.
func (r *Reader) fill(behind int) {
	share := r.mem.share(r.far)
	for len(r.queue)-behind < r.window && r.next < r.end {
		if len(r.queue) > behind && r.next-r.queue[0].off+r.blockLen() > share {
			return
		}
		if !r.schedule() {
			return
		}
	}
}

// schedule fetches the next block of the range in the background; false
// when the memory budget has no room for it.
func (r *Reader) schedule() bool {
	buf := r.mem.getBuf(r.blockLen())
	if buf == nil {
		return false
	}
	r.queue = append(r.queue, r.start(r.next, buf))
	r.next += int64(len(buf))
	return true
}

// blockLen is the length of the next block: r.size, cut at the range's
// end. With ReadAt, a block of at least two requests is also cut so it
// ends where a request of a sequential reader will end: a multiple of
// maxRequest past the end of the latest request (reqEnd). Such a request
// then lies inside one block and is answered from it without a copy;
// the kernel's requests keep the phase their ramp-up left, which need
// not be aligned to anything. (Read's caller copies anyway.)
func (r *Reader) blockLen() int64 {
	n := min(r.size, r.end-r.next)
	if r.reqEnd == 0 || n < 2*maxRequest || r.next+n == r.end {
		return n
	}
	return n - ((r.next+n-r.reqEnd)%maxRequest+maxRequest)%maxRequest
}

// start starts the fetch of a block of buf's size at off.
func (r *Reader) start(off int64, buf []byte) *block {
	ctx, cancel := context.WithCancel(r.ctx)
	b := &block{off: off, buf: buf, done: make(chan struct{}), cancel: cancel}
	b.arrival.wake = make(chan struct{})
	b.owners.init()
	r.wg.Add(1)
	go r.fetch(ctx, b)
	return b
}

// readDirect reads into p with one GET and no buffer of its own, for a
// reader with nothing fetched ahead when the memory budget is spent.
func (r *Reader) readDirect(p []byte) (int, error) {
	n := min(int64(len(p)), r.end-r.pos)
	if n == 0 {
		return 0, nil
	}
	if err := r.get(p[:n], r.pos); err != nil {
		return 0, err
	}
	r.pos += n
	r.next = r.pos
	return int(n), nil
}

// get reads len(p) bytes at off into p with one GET; an error fails the
// Reader.
func (r *Reader) get(p []byte, off int64) error {
	rc, err := r.open(r.ctx, off, int64(len(p)))
	if err == nil {
		var got int
		got, err = io.ReadFull(rc, p)
		rc.Close()
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			err = fmt.Errorf("short read at offset %d: %d of %d bytes (object changed?)", off, got, len(p))
		}
	}
	if err != nil {
		r.err = err
	}
	return err
}

// letGo is the Reader letting go of b's buffer.
func (r *Reader) letGo(b *block) {
	if b.owners.letGo() {
		r.mem.putBuf(b.buf)
	}
}

func (r *Reader) fetch(ctx context.Context, b *block) {
	defer r.wg.Done()
	defer r.letGo(b)
	defer close(b.done)
	defer b.cancel()
	start := time.Now()
	rc, err := r.open(ctx, b.off, int64(len(b.buf)))
	if err != nil {
		b.err = err
		return
	}
	defer rc.Close()
	opened := time.Now()
	b.ttfb = opened.Sub(start)
	got, err := receive(rc, b)
	b.xfer = time.Since(opened)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			err = fmt.Errorf("short read at offset %d: %d of %d bytes (object changed?)", b.off, got, len(b.buf))
		}
		b.err = err
		return
	}
	b.arrival.advance(got)
}

// receive reads rc into b's buffer until it is full, as io.ReadFull does,
// making every arrivalStep bytes readable as they arrive; the caller makes
// the last ones readable.
func receive(rc io.Reader, b *block) (int, error) {
	got, next := 0, arrivalStep
	for got < len(b.buf) {
		n, err := rc.Read(b.buf[got:])
		got += n
		if got >= next && got < len(b.buf) {
			b.arrival.advance(got)
			next = got + arrivalStep
		}
		switch {
		case got == len(b.buf):
			return got, nil
		case err == io.EOF:
			return got, io.ErrUnexpectedEOF
		case err != nil:
			return got, err
		}
	}
	return got, nil
}

// RangeSeek moves the reader to offset (from the start, to the end of
// the range) keeping the blocks that hold or follow it, and the grown
// window when the move is short: the VFS seeks on reads that arrive out of
// order, and a restart at a small block would throttle a sequential
// reader. It implements rclone's fs.RangeSeeker; a length limit is not
// supported (the caller then opens a new reader).
func (r *Reader) RangeSeek(_ context.Context, offset int64, whence int, length int64) (int64, error) {
	if whence != io.SeekStart || length > 0 || r.err != nil || offset < 0 || offset >= r.end {
		return 0, errors.New("readahead: seek not supported")
	}
	for len(r.queue) > 0 && r.queue[0].off+int64(len(r.queue[0].buf)) <= offset {
		r.drop()
	}
	if len(r.queue) > 0 && r.queue[0].off <= offset {
		r.queue[0].read = int(offset - r.queue[0].off)
		r.pos = offset
		return offset, nil
	}
	r.moveTo(offset)
	return offset, nil
}

// moveTo drops the window and restarts it at off: after a far move with
// one small block again, after a short one at the grown size and width,
// but for a width widen opened on one block's evidence, which goes back
// to what that block's rate asked for.
func (r *Reader) moveTo(off int64) {
	far := off < r.pos-r.opt.BlockSize || off > r.next+r.opt.BlockSize
	for len(r.queue) > 0 {
		r.drop()
	}
	r.pos, r.next = off, off
	switch {
	case far:
		r.size, r.window = r.opt.FirstBlock, 1
	case r.jumped:
		r.size, r.window = r.slowSize, r.slowWindow
	}
	r.jumped = false
}

// drop abandons the head block; its GET is cancelled unless a ReadAt
// waits for it, and its buffer goes back once the GET has ended and the
// readers holding it let go.
func (r *Reader) drop() {
	if r.queue[0].waiters == 0 {
		r.queue[0].cancel()
	}
	r.letGo(r.queue[0])
	r.queue = r.queue[1:]
}

// Close cancels the blocks in flight and waits for their GETs to end.
func (r *Reader) Close() error {
	r.cancel()
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range r.queue {
		r.letGo(b)
	}
	r.queue = nil
	if !r.closed {
		r.closed = true
		r.mem.readers.Add(-1)
	}
	if r.err == nil {
		r.err = errors.New("readahead: reader closed")
	}
	return nil
}

// ReadAt returns up to len(p) bytes at off, for a caller whose reads may
// arrive out of order and at once (the FUSE server answers the kernel's
// read requests concurrently). A read inside one block returns that
// block's bytes without a copy, held until release is called; a read
// across blocks is copied into p. release must be called once data is no
// longer used.
//
// Calls may run concurrently: each schedules what it needs under the
// Reader's lock and waits for its block without it, so the GETs of
// concurrent requests overlap. A block a request waits for is never
// cancelled by another request moving the window.
//
// The blocks up to BlockSize behind the furthest read are kept, so a
// request that arrives late finds its bytes; a read near the window joins
// it, a far one moves it (see locate). Each block read to its end at
// least doubles both the block size and the window, up to their limits,
// and widens them at once to the store's round trip (see widen). A Reader
// is used through Read or through ReadAt, not both.
func (r *Reader) ReadAt(p []byte, off int64) (data []byte, release func(), err error) {
	nop := func() {}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return nil, nop, r.err
	}
	if off < 0 {
		return nil, nop, errors.New("readahead: negative offset")
	}
	if off >= r.end {
		return nil, nop, io.EOF
	}
	n := min(int64(len(p)), r.end-off)
	r.reqEnd = off + n
	for got := int64(0); got < n; {
		at := off + got
		i := r.locate(at, n-got)
		if i < 0 {
			// Nothing could be fetched ahead (memory budget): read into p.
			if err := r.readInto(p[got:n], at); err != nil {
				return nil, nop, err
			}
			break
		}
		b := r.queue[i]
		// The bytes of b this read needs: it waits for those only.
		need := min(at-b.off+n-got, int64(len(b.buf)))
		r.count(b, int(need))
		b.waiters++
		b.owners.hold()
		r.mu.Unlock()
		err := r.await(b, int(need))
		r.mu.Lock()
		b.waiters--
		if err != nil {
			r.letGo(b)
			if r.err == nil {
				r.err = err
			}
			return nil, nop, err
		}
		start := at - b.off
		if got == 0 && start+n <= int64(len(b.buf)) {
			// Inside one block: its own bytes, held for the caller.
			r.consumed(b, at+n)
			return b.buf[start : start+n], func() { r.letGo(b) }, nil
		}
		// Across blocks: copied into p, block by block.
		c := int64(copy(p[got:n], b.buf[start:]))
		got += c
		r.consumed(b, at+c)
		r.letGo(b)
	}
	return p[:n], nop, nil
}

// count records, at a block's first read, whether the first need bytes
// of it had arrived.
func (r *Reader) count(b *block, need int) {
	if b.counted {
		return
	}
	b.counted = true
	arrived, _ := b.arrival.state()
	r.hits.block(arrived >= need)
}

// await waits until the first need bytes of b have arrived, and returns
// nil, or b's fetch error, or the Reader's context's.
func (r *Reader) await(b *block, need int) error {
	for {
		arrived, wake := b.arrival.state()
		if arrived >= need {
			return nil
		}
		select {
		case <-wake:
		case <-b.done:
			if b.err != nil {
				return b.err
			}
		case <-r.ctx.Done():
			return r.ctx.Err()
		}
	}
}

// maxRequest is the largest read request the FUSE server gets: the
// mount's kernel read-ahead and max_read (fuseserver's kernelReadAhead).
const maxRequest = 1 << 20

// joinGap is how far from the window a read joins it rather than moving
// it: twice the largest request, which bounds how far apart concurrent
// requests of a sequential reader are.
const joinGap = 2 * maxRequest

// locate returns the queue index of the block holding off, scheduling
// blocks first if none does; -1 when none could be scheduled (the memory
// budget). n is the size of the read, for the first GET after a seek.
//
// A read within joinGap of the window joins it, so nothing fetched is
// dropped: one just ahead gets the blocks up to it scheduled, one just
// behind (a request that arrived late) a block of its own in front.
// Any other read moves the window there: a seek, which keeps the grown
// window when short and starts with one small block again when far.
func (r *Reader) locate(off, n int64) int {
	i := r.find(off)
	if i < 0 {
		ahead := off >= r.next && off <= r.next+joinGap
		behind := len(r.queue) > 0 && off < r.queue[0].off && off >= r.queue[0].off-joinGap
		if !ahead && !behind {
			r.moveTo(off)
		}
		if len(r.queue) == 0 && r.window == 1 {
			// One GET covers at least this read.
			r.size = max(r.size, min(classOf(n), r.opt.BlockSize))
		}
		if behind {
			r.prepend(off)
		}
		for r.next <= off && r.next < r.end && r.schedule() {
		}
		if i = r.find(off); i < 0 {
			return -1
		}
	}
	// Keep the blocks up to BlockSize behind the furthest read, for
	// requests that arrive late.
	for i > 0 && r.queue[0].off+int64(len(r.queue[0].buf)) <= r.pos-r.opt.BlockSize {
		r.drop()
		i--
	}
	r.fill(i)
	return i
}

// prepend schedules the bytes from off to the first queued block as a
// block in front of it, if the memory budget has room.
func (r *Reader) prepend(off int64) {
	buf := r.mem.getBuf(r.queue[0].off - off)
	if buf == nil {
		return
	}
	b := r.start(off, buf)
	r.queue = append([]*block{b}, r.queue...)
}

// find returns the queue index of the block holding off, or -1.
func (r *Reader) find(off int64) int {
	for i, b := range r.queue {
		if b.off <= off && off < b.off+int64(len(b.buf)) {
			return i
		}
	}
	return -1
}

// wait waits for b's fetch, counting a hit or a miss at its first read;
// a failed fetch or an ended context fails the Reader.
func (r *Reader) wait(b *block) error {
	r.count(b, len(b.buf))
	if err := r.await(b, len(b.buf)); err != nil {
		r.err = err
		return err
	}
	return nil
}

// consumed records a read of b up to end: the highest end read so far
// moves on, and a block read to its end widens the window once.
func (r *Reader) consumed(b *block, end int64) {
	r.pos = max(r.pos, end)
	if end == b.off+int64(len(b.buf)) && !b.ended {
		// Out-of-order requests are cheap here, so a sequential reader
		// gets parallel GETs at once: blocks and window grow together.
		b.ended = true
		r.widen(b)
	}
}

// widen grows the block size and the window after b, a block of this
// Reader that has arrived, was read to its end: at least doubling each,
// and at once as far as the store's round trip asks. A GET spends its time
// to first byte idle: to keep the link busy, the bytes in flight must be
// what arrives in that time, b's time to first byte at b's transfer rate.
// A store on loopback answers in about a millisecond and the window grows
// by doubling.
//
// b's rate is one connection's, which a far store's round trip bounds (a
// TCP window per round trip) below what several connections bring. So
// when the reader's blocks all waited farTTFB or more, and b latencyBound
// times as long as its bytes took to arrive, the store is far: the window
// opens at once to its full width, farWidth times opt.Window while the
// store stays far, each GET carrying at least the bytes in flight that
// one connection asked for. A store 20 ms away, whose first block of
// 1 MiB waits 3 to 8 times as long as it transfers, gets 8 × 4 or 8 × 8
// MiB after it, where sizing the window by one connection's rate took
// three round trips to reach 4 × 8 MiB (docs/benchmarks.md, "The
// read-ahead opens its window at a far store").
//
// The time to first byte that counts is the shortest of the reader's
// blocks so far, as TCP estimates a path's round trip from the least it
// has seen: a GET's wait also holds the GETs queued before it at the
// server and the CPU the reader's server shares, so on loopback, with GETs
// in flight on a 2-core machine, single blocks waited 5 to 25 ms for 2 to
// 3 ms of transfer, while the least wait stays about a millisecond; 20 ms
// away no GET answers sooner than the round trip. So a block that waited
// less than farTTFB makes the store near for the rest of the reader's life
// (the window returns to opt.Window blocks).
//
// That width is kept only by a reader that goes on in order: a short move
// first (moveTo) returns to what the rate alone asked for, so a random
// reader whose reads fall near each other does not fetch the full window
// at each.
func (r *Reader) widen(b *block) {
	size, window := r.size*2, r.window*2
	far, inFlight := false, int64(0)
	if b.xfer > 0 && b.ttfb > 0 {
		if r.minTTFB == 0 || b.ttfb < r.minTTFB {
			r.minTTFB = b.ttfb
		}
		ratio := min(float64(b.ttfb)/float64(b.xfer), 1<<10)
		inFlight = int64(float64(len(b.buf)) * ratio)
		size = max(size, classOf(inFlight/int64(r.opt.Window)))
		window = max(window, int(min(inFlight/min(size, r.opt.BlockSize), int64(r.opt.Window))))
		far = r.minTTFB >= farTTFB && ratio >= latencyBound
	}
	r.size = min(size, r.opt.BlockSize)
	r.far = (r.far || far) && r.minTTFB >= farTTFB
	r.window = min(window, r.maxWindow())
	r.jumped = far
	if far {
		r.slowSize, r.slowWindow = r.size, r.window
		r.size, r.window = min(max(r.size, classOf(inFlight)), r.opt.BlockSize), r.maxWindow()
	}
}

// latencyBound is the ratio of a GET's time to first byte to its
// transfer time from which widen takes the store for far: on loopback a
// GET of 1 MiB waits about as long as it transfers, 20 ms away 3 to 8
// times as long.
const latencyBound = 2

// farTTFB is the least time to first byte of a reader's blocks that widen
// takes for a far store's: on loopback, or a rack away, a GET answers in
// about a millisecond, and a small block arrives in less.
const farTTFB = 5 * time.Millisecond

// farWidth is how many times opt.Window blocks the window holds from a
// far store. One connection there streams about a TCP window per round
// trip (6 MiB per 20 ms), so a block of 8 MiB takes two to three round
// trips and 4 of them in flight held MOUNT near 600 MB/s where the raw
// GETs' 8 brought 700 to 850; with 8, MOUNT read 0.82-0.90x the raw GETs
// against 0.72-0.80x in 5 alternated pairs (docs/benchmarks.md, "Twice
// the GETs in flight from a far store").
const farWidth = 2

// readInto reads len(p) bytes at off with one GET, when the memory
// budget holds no block.
func (r *Reader) readInto(p []byte, off int64) error {
	if err := r.get(p, off); err != nil {
		return err
	}
	r.pos = max(r.pos, off+int64(len(p)))
	r.next = max(r.next, r.pos)
	return nil
}
