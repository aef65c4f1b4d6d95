package readahead

import (
	"sync"
	"sync/atomic"
)

// memory is the byte budget of one Fs (one FUSE server): read-ahead blocks
// in use, buffers kept for reuse and small files fetched ahead all count
// against limit, so the server holds at most limit bytes for reads however
// many files are open. Nothing waits for it: a Reader that gets no block
// fetches no further ahead, and with nothing ahead it reads straight into
// the caller's buffer (see Reader.Read); the small-file prefetch stops.
type memory struct {
	mu    sync.Mutex
	limit int64
	used  int64 // blocks handed out and small files held
	kept  int64 // buffers kept for reuse
	peak  int64 // most of used+kept held at once
	// mapped is the bytes of block buffers taken from mapBuf and not yet
	// given back with unmapBuf: 0 once every Reader is closed and trim has
	// run.
	mapped int64
	// Buffers kept for reuse by capacity class: unlike a sync.Pool they
	// survive garbage collections, which a small heap runs often, so
	// steady streaming allocates nothing. trim releases them.
	byClass map[int64][][]byte
	// readers is the number of open Readers, which share span (or the
	// limit, if smaller).
	readers atomic.Int64
	// span is the most one sequential Reader holds at its widest: its
	// window of blocks ahead and a block kept behind (see share); farSpan
	// the same for a Reader of a far store, whose window is wider.
	span, farSpan int64
}

// keepBytes bounds the buffers kept for reuse (within the limit).
const keepBytes = 64 << 20

// newMemory returns the budget of opt.MemoryLimit bytes for Readers with
// opt's window and block size; opt has its defaults.
func newMemory(opt Options) *memory {
	span := int64(opt.Window+1) * opt.BlockSize
	farSpan := int64(farWidth*opt.Window+1) * opt.BlockSize
	return &memory{limit: opt.MemoryLimit, span: span, farSpan: farSpan, byClass: map[int64][][]byte{}}
}

// getBuf returns a buffer of n bytes counted against the budget, or nil
// when the budget cannot hold it.
func (m *memory) getBuf(n int64) []byte {
	c := classOf(n)
	m.mu.Lock()
	defer m.mu.Unlock()
	if l := m.byClass[c]; len(l) > 0 {
		b := l[len(l)-1]
		m.byClass[c] = l[:len(l)-1]
		m.kept -= c
		m.used += c
		return b[:n]
	}
	if !m.makeRoomLocked(c) {
		return nil
	}
	b := mapBuf(c)
	if b == nil {
		return nil
	}
	m.used += c
	m.mapped += c
	m.notePeakLocked()
	return b[:n]
}

// putBuf returns a buffer from getBuf, kept for reuse while the kept
// buffers stay small.
func (m *memory) putBuf(b []byte) {
	c := int64(cap(b))
	m.mu.Lock()
	defer m.mu.Unlock()
	m.used -= c
	if m.kept+c > min(keepBytes, m.limit/2) {
		m.dropLocked(b)
		return
	}
	m.byClass[c] = append(m.byClass[c], b[:c])
	m.kept += c
}

// share is what one open Reader may hold ahead of its reads: an even
// share of the span of one sequential reader, or of the limit if that is
// smaller. Alone, a Reader gets its whole window. Many readers at once
// each keep some read-ahead (at least one block: see Reader.fill) instead
// of the first ones taking the whole budget and the rest reading with
// none, and together they hold one reader's span (or a block each, if
// they are more readers than its blocks). More in flight than that added
// no speed when measured (docs/benchmarks.md, "Open files share one
// file's read-ahead span"), while each reader that stops short of the
// end of the file, as one reading its part of a file does, leaves what
// it holds ahead fetched and never read. A Reader of a far store (far)
// shares the wider span of its window (Reader.maxWindow).
func (m *memory) share(far bool) int64 {
	span := m.span
	if far {
		span = m.farSpan
	}
	return min(m.limit, span) / max(m.readers.Load(), 1)
}

// reserve counts n bytes (a small file) against the budget; false when
// they do not fit.
func (m *memory) reserve(n int64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.makeRoomLocked(n) {
		return false
	}
	m.used += n
	m.notePeakLocked()
	return true
}

// unreserve gives back n bytes of reserve.
func (m *memory) unreserve(n int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.used -= n
}

// makeRoomLocked reports whether n more bytes fit, dropping kept buffers
// to make room.
func (m *memory) makeRoomLocked(n int64) bool {
	if m.used+n > m.limit {
		return false
	}
	for c, l := range m.byClass {
		for len(l) > 0 && m.used+m.kept+n > m.limit {
			m.dropLocked(l[len(l)-1])
			l = l[:len(l)-1]
			m.kept -= c
		}
		m.byClass[c] = l
	}
	return true
}

func (m *memory) notePeakLocked() {
	m.peak = max(m.peak, m.used+m.kept)
}

// trim drops the buffers kept for reuse, for an idle server to give their
// memory back.
func (m *memory) trim() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, l := range m.byClass {
		for _, b := range l {
			m.dropLocked(b)
		}
	}
	m.byClass, m.kept = map[int64][][]byte{}, 0
}

// dropLocked gives a buffer nothing refers to back to the system.
func (m *memory) dropLocked(b []byte) {
	m.mapped -= int64(cap(b))
	unmapBuf(b)
}

// held returns the bytes held now and the most ever held at once.
func (m *memory) held() (now, peak int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.used + m.kept, m.peak
}

// twoOwners tracks memory shared by a fetch that fills it and the holder
// that reads it: it goes back to the budget when both have let go (a
// cancelled fetch may still be writing into a buffer its reader dropped).
// A holder may lend it out meanwhile (hold): each loan is one more owner.
type twoOwners struct{ left atomic.Int32 }

func (t *twoOwners) init() { t.left.Store(2) }

// hold adds an owner; the caller must already be one.
func (t *twoOwners) hold() { t.left.Add(1) }

// letGo reports whether the caller was the last owner.
func (t *twoOwners) letGo() bool { return t.left.Add(-1) == 0 }

// classOf rounds n up to a power of two of at least 64 KiB.
func classOf(n int64) int64 {
	c := int64(64 << 10)
	for c < n {
		c <<= 1
	}
	return c
}
