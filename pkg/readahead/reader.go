// Package readahead makes streaming (MOUNT) reads fast without making
// random reads slow. It wraps an rclone fs.Fs so that every object the
// VFS reads is fetched by a Reader: ranged GETs in parallel ahead of a
// sequential reader, in a window that starts with one small request (a
// random read costs one short GET) and grows while the reads stay
// sequential. It also fetches small objects ahead of a reader that opens
// them one after another in listing order (see Fs).
//
// Memory is bounded: a Reader holds at most Window blocks of BlockSize;
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
)

// Options tune the read path. Zero values take the defaults.
type Options struct {
	// Window is the most blocks fetched at once by one Reader (4).
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
// It is an io.ReadCloser for one goroutine; Close cancels the GETs in
// flight and waits for them.
type Reader struct {
	ctx    context.Context
	cancel context.CancelFunc
	open   RangeOpener
	opt    Options
	mem    *memory
	pos    int64 // next byte Read returns
	next   int64 // first byte not yet scheduled
	end    int64
	size   int64    // size of the next block; doubles to opt.BlockSize
	window int      // blocks allowed in flight now; grows to opt.Window
	queue  []*block // scheduled blocks in offset order
	wg     sync.WaitGroup
	err    error
	hits   *Hits // nil: not counted
}

type block struct {
	owners twoOwners // the Reader and the fetch
	off    int64
	buf    []byte
	read   int // bytes of buf already returned
	// counted is set once the block's hit or miss is recorded.
	counted bool
	done    chan struct{}
	err     error
	cancel  context.CancelFunc
}

// NewReader returns a Reader of [start, end) fetched with open, holding
// at most opt.MemoryLimit bytes.
func NewReader(ctx context.Context, open RangeOpener, start, end int64, opt Options) *Reader {
	opt = opt.withDefaults()
	return newReader(ctx, open, start, end, opt, newMemory(opt.MemoryLimit))
}

// newReader returns a Reader whose blocks count against mem; opt has its
// defaults.
func newReader(ctx context.Context, open RangeOpener, start, end int64, opt Options, mem *memory) *Reader {
	ctx, cancel := context.WithCancel(ctx)
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
	r.fill()
	if len(r.queue) == 0 {
		return r.readDirect(p)
	}
	b := r.queue[0]
	if !b.counted {
		b.counted = true
		select {
		case <-b.done:
			r.hits.block(true)
		default:
			r.hits.block(false)
		}
	}
	select {
	case <-b.done:
	case <-r.ctx.Done():
		r.err = r.ctx.Err()
		return 0, r.err
	}
	if b.err != nil {
		r.err = b.err
		return 0, r.err
	}
	n := copy(p, b.buf[b.read:])
	b.read += n
	r.pos += int64(n)
	if b.read == len(b.buf) {
		r.queue = r.queue[1:]
		r.letGo(b)
		// A block read to its end: the reader is sequential. Grow the
		// blocks first, then the window, so a short read after a seek
		// fetches little.
		if r.size < r.opt.BlockSize {
			r.size = min(r.size*2, r.opt.BlockSize)
		} else {
			r.window = min(r.window*2, r.opt.Window)
		}
	}
	return n, nil
}

// fill schedules blocks until the window is full, the range is, or the
// memory budget is.
func (r *Reader) fill() {
	for len(r.queue) < r.window && r.next < r.end {
		n := min(r.size, r.end-r.next)
		buf := r.mem.getBuf(n)
		if buf == nil {
			return
		}
		ctx, cancel := context.WithCancel(r.ctx)
		b := &block{off: r.next, buf: buf, done: make(chan struct{}), cancel: cancel}
		b.owners.init()
		r.queue = append(r.queue, b)
		r.next += n
		r.wg.Add(1)
		go r.fetch(ctx, b)
	}
}

// readDirect reads into p with one GET and no buffer of its own, for a
// reader with nothing fetched ahead when the memory budget is spent.
func (r *Reader) readDirect(p []byte) (int, error) {
	n := min(int64(len(p)), r.end-r.pos)
	if n == 0 {
		return 0, nil
	}
	rc, err := r.open(r.ctx, r.pos, n)
	if err == nil {
		var got int
		got, err = io.ReadFull(rc, p[:n])
		rc.Close()
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			err = fmt.Errorf("short read at offset %d: %d of %d bytes (object changed?)", r.pos, got, n)
		}
	}
	if err != nil {
		r.err = err
		return 0, err
	}
	r.pos += n
	r.next = r.pos
	return int(n), nil
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
	rc, err := r.open(ctx, b.off, int64(len(b.buf)))
	if err != nil {
		b.err = err
		return
	}
	defer rc.Close()
	got, err := io.ReadFull(rc, b.buf)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			err = fmt.Errorf("short read at offset %d: %d of %d bytes (object changed?)", b.off, got, len(b.buf))
		}
		b.err = err
	}
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
	far := offset < r.pos-r.opt.BlockSize || offset > r.next+r.opt.BlockSize
	for len(r.queue) > 0 {
		r.drop()
	}
	r.pos, r.next = offset, offset
	if far {
		r.size, r.window = r.opt.FirstBlock, 1
	}
	return offset, nil
}

// drop abandons the head block; its GET is cancelled, and its buffer
// goes back once the GET has ended.
func (r *Reader) drop() {
	r.queue[0].cancel()
	r.letGo(r.queue[0])
	r.queue = r.queue[1:]
}

// Close cancels the blocks in flight and waits for their GETs to end.
func (r *Reader) Close() error {
	r.cancel()
	r.wg.Wait()
	for _, b := range r.queue {
		r.letGo(b)
	}
	r.queue = nil
	if r.err == nil {
		r.err = errors.New("readahead: reader closed")
	}
	return nil
}
