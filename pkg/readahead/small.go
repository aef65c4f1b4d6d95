package readahead

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"
)

// dirOrder is one listing of a directory: its objects in listing order
// and where a reader opening them one after another, and a caller
// statting them one after another, have got to. smallAhead.mu guards it.
type dirOrder struct {
	objs     []*Object
	sorted   bool // objs are in name order (the order the VFS shows)
	last     int  // index of the small object opened last (-2: none)
	opened   int  // index of the object of any size opened last (-2: none)
	evicted  int  // objects before this index hold no prefetch
	statLast int  // index of the object statted last (-2: none)
	statNext int  // objects from this index on have no mtime lookup started by the order
}

func newDirOrder() *dirOrder { return &dirOrder{last: -2, opened: -2, statLast: -2} }

// sortByName puts objs in name order, once: backends list in their own
// order, readers and `ls` go by name.
func (d *dirOrder) sortByName() {
	if d.sorted {
		return
	}
	sort.Slice(d.objs, func(i, j int) bool { return d.objs[i].Remote() < d.objs[j].Remote() })
	for i, x := range d.objs {
		x.idx = i
	}
	d.sorted = true
}

// emptyRun reports whether every object in [from, to) is empty, looking
// at no more than statWindow of them: a longer run counts as not empty.
func (d *dirOrder) emptyRun(from, to int) bool {
	if to-from > statWindow {
		return false
	}
	for _, x := range d.objs[from:max(from, to)] {
		if x.Size() != 0 {
			return false
		}
	}
	return true
}

// smallAhead fetches small objects ahead of a reader that opens them in
// listing order, as training loops, builds and `cat dir/*` do. A random
// order fetches nothing ahead.
type smallAhead struct {
	opt     Options
	mem     *memory
	mu      sync.Mutex
	held    int64 // bytes of entries in the map (done or in flight)
	entries map[*Object]*smallEntry
	limit   *fetchLimit // places among the fetches
	expired time.Time   // last sweep of expire
	// work runs the fetches, and statAhead's lookups.
	work *workers
}

type smallEntry struct {
	owners twoOwners // the map (then the reader it is handed to) and the fetch
	at     time.Time
	size   int64 // the object's size when scheduled: what held counts for it
	done   chan struct{}
	data   []byte
	err    error
	cancel context.CancelFunc // ends its GET if still running
}

// smallFetches is the most small objects fetched at once (fetchLimit
// lowers it while the fetches queue rather than wait on the wire). 16 read
// small files 1.1x faster on loopback and 1.8x with a 20 ms round trip
// than 8 (docs/benchmarks.md); 32 gained a little more, but with the
// read-ahead's ranges it outgrew the idle connections rclone's HTTP
// client kept per host (20 for a MOUNT volume before the FUSE server
// raised them to 36 for the mtime lookups, statFetches), so GETs would
// open new connections, a round trip each on a far store.
const smallFetches = 16

// expireAfter drops prefetched objects nobody opened.
const expireAfter = 30 * time.Second

func newSmallAhead(opt Options, mem *memory) *smallAhead {
	return &smallAhead{opt: opt, mem: mem, entries: map[*Object]*smallEntry{}, limit: newFetchLimit(minSmallFetches, smallFetches), work: newWorkers(workerLinger)}
}

// add appends objs (a page of a listing) to the listing order.
func (s *smallAhead) add(order *dirOrder, objs []*Object) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range objs {
		o.dir, o.idx = order, len(order.objs)
		order.objs = append(order.objs, o)
	}
	order.sorted = false
}

func (s *smallAhead) isSmall(o *Object) bool {
	return s.opt.SmallMax > 0 && o.Size() > 0 && o.Size() <= s.opt.SmallMax
}

// fetches says whether the prefetch fetches o for a reader that reaches
// it in order: o is small and the prefetch may hold memory.
func (s *smallAhead) fetches(o *Object) bool {
	return s.isSmall(o) && s.opt.MemoryLimit > 0
}

// holds says whether a prefetch of o is held or running.
func (s *smallAhead) holds(o *Object) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.entries[o] != nil
}

// opening records an open of o, of any size, in its listing's order (for
// statAhead, which leaves the files a reader's prefetch fetches alone).
func (s *smallAhead) opening(o *Object) {
	if o.dir == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o.dir.sortByName()
	o.dir.opened = o.idx
	o.opened = true
}

// open returns a reader of [start, end) of o from a prefetch, or nil when
// none holds o. An open that continues the listing order fetches the next
// small objects ahead. An open whose object is still being fetched (or
// queued behind the fetches running) waits for that fetch while ctx
// lasts, rather than fetching it a second time.
func (s *smallAhead) open(ctx context.Context, o *Object, start, end int64) io.ReadCloser {
	if o.dir == nil || !s.isSmall(o) {
		return nil
	}
	s.mu.Lock()
	e := s.take(o)
	d := o.dir
	d.sortByName()
	if o.idx == d.last+1 || o.idx == d.last {
		s.evictBefore(d, o.idx)
		s.schedule(d, o.idx+1)
	}
	d.last = o.idx
	s.mu.Unlock()
	if e == nil {
		return nil
	}
	select {
	case <-e.done:
	case <-ctx.Done():
		e.cancel() // nobody else will read it
		s.letGo(e)
		return nil
	}
	if e.err != nil || int64(len(e.data)) != e.size || e.size != o.Size() || end > e.size {
		s.letGo(e)
		return nil // read it directly instead
	}
	return &smallReader{Reader: bytes.NewReader(e.data[start:end]), data: e.data[start:end], release: func() { s.letGo(e) }}
}

// smallReader reads a prefetched small file; Close gives its memory back.
type smallReader struct {
	*bytes.Reader
	data    []byte // all of it, for smallAt
	once    sync.Once
	release func()
}

func (r *smallReader) Close() error {
	r.once.Do(r.release)
	return nil
}

// letGo is one owner of e letting go of its data.
func (s *smallAhead) letGo(e *smallEntry) {
	if e.owners.letGo() {
		s.mem.unreserve(e.size)
	}
}

// take removes o's entry from the map and returns it; the caller owns it
// from then on, and a fetch still running goes on for it. Call with s.mu
// held.
func (s *smallAhead) take(o *Object) *smallEntry {
	e := s.entries[o]
	if e != nil {
		delete(s.entries, o)
		s.held -= e.size
	}
	return e
}

// forget drops o's entry, if any (its content is being replaced).
func (s *smallAhead) forget(o *Object) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop(o)
}

// drop removes o's entry, if any, ends its fetch if still running and
// lets go of it. Call with s.mu held.
func (s *smallAhead) drop(o *Object) {
	if e := s.take(o); e != nil {
		e.cancel()
		s.letGo(e)
	}
}

// evictBefore drops the entries of d's objects before idx, which a
// sequential reader has passed. Call with s.mu held.
func (s *smallAhead) evictBefore(d *dirOrder, idx int) {
	for ; d.evicted < idx && d.evicted < len(d.objs); d.evicted++ {
		s.drop(d.objs[d.evicted])
	}
}

// schedule starts fetches of the small objects of d from idx on, up to
// SmallAhead objects and the byte budget. Call with s.mu held.
func (s *smallAhead) schedule(d *dirOrder, idx int) {
	s.expire()
	for i := idx; i < len(d.objs) && i < idx+s.opt.SmallAhead; i++ {
		o := d.objs[i]
		if !s.isSmall(o) || s.entries[o] != nil {
			continue
		}
		size := o.Size()
		if s.held+size > s.opt.SmallBudget || !s.mem.reserve(size) {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), expireAfter)
		e := &smallEntry{at: time.Now(), size: size, done: make(chan struct{}), cancel: cancel}
		e.owners.init()
		s.entries[o] = e
		s.held += size
		s.work.Go(func() { s.fetch(ctx, o, e) })
	}
}

// expire drops entries nobody opened in time, sweeping at most once a
// second. Call with s.mu held.
func (s *smallAhead) expire() {
	if time.Since(s.expired) < time.Second {
		return
	}
	s.expired = time.Now()
	for o, e := range s.entries {
		if time.Since(e.at) > expireAfter {
			s.drop(o)
		}
	}
}

// release drops every entry and ends the waiting workers, for an idle
// process.
func (s *smallAhead) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for o := range s.entries {
		s.drop(o)
	}
	s.work.stopIdle()
}

func (s *smallAhead) fetch(ctx context.Context, o *Object, e *smallEntry) {
	defer s.letGo(e)
	defer close(e.done)
	defer e.cancel()
	if err := s.limit.acquire(ctx); err != nil {
		e.err = err
		return
	}
	start := time.Now()
	rc, err := o.get(ctx)
	if err != nil {
		s.limit.release(0)
		e.err = err
		return
	}
	firstByte := time.Since(start)
	defer s.limit.release(firstByte)
	defer rc.Close()
	// Exactly the listed size, which the budget counts; one byte more
	// means the object changed.
	data := make([]byte, e.size)
	n, err := io.ReadFull(rc, data)
	if err == nil {
		var extra [1]byte
		if m, _ := rc.Read(extra[:]); m > 0 {
			n, err = n+m, io.ErrUnexpectedEOF
		}
	}
	if err != nil {
		err = fmt.Errorf("%s: read %d bytes, listed %d (object changed?): %w", o.Remote(), n, e.size, err)
		data = nil
	}
	e.data, e.err = data, err
}
