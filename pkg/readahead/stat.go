package readahead

import (
	"context"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/rclone/rclone/fs"
)

// statAhead looks up ahead the mtimes of objects a caller stats in name
// order (`ls -l`, `find -newer`, rsync, a reader of large files that
// stats each before it reads it), on stores where an object's mtime
// costs a request of its own (Options.StatAhead): S3-compatible stores
// keep the mtime that uploaders set in metadata, which a listing leaves
// out, so rclone reads it with a HEAD at the first stat of each file, one
// round trip after another. After two stats in name order, the next
// statWindow objects of the listing are looked up, statFetches at a time.
// A read's GET brings the same metadata (rclone's S3 object keeps it), so
// objects already read, and the small files the small-file prefetch
// fetches for a reader of files in order, are not looked up (passed).
//
// A lookup is the HEAD rclone's own object would make, made on a twin of
// it: a copy of the object as listed, taken before rclone held it, so the
// listed object rclone holds is never touched by a lookup. Once
// a stat is answered from a lookup, the object's size and hash come from
// the twin too, as they would from the listed object after its own HEAD
// (rclone refreshes all three): the VFS cache then checks its copy
// against the object as the stat saw it. A lookup is never older than
// the listing it belongs to, and a listing is read again after the
// directory cache time, so others' changes still show within it.
type statAhead struct {
	on    bool
	small *smallAhead // its mu guards the dirOrders
	sem   chan struct{}
	hits  *Hits
	// twinnable says whether an object can be copied into a twin:
	// objects of the backends whose object is a plain struct, read in
	// rclone v1.76 (s3, oracleobjectstorage; twinnableBackend).
	twinnable func(fs.Object) bool
}

// statFetches is how many lookups run at once. `ls -l` of 2,500 files
// with a 20 ms round trip took 3.9 s with 16 at once, 2.2 s with 32 and
// 1.7-1.8 s with 64 (docs/benchmarks.md); 32 keeps the burst a store sees
// modest. A caller keeping more idle connections than that per host
// (rclone's HTTP client keeps 2 × (checkers + transfers + 1)) saves a
// handshake per lookup.
const statFetches = 32

// statWindow is how far ahead of the last stat objects are looked up:
// four rounds of statFetches, so lookups are always in flight while the
// caller is served from the finished ones. A caller that stops early
// leaves up to this many lookups unused.
const statWindow = 4 * statFetches

// statTimeout bounds one lookup ahead; a stat that waits for a running
// lookup waits at most this long before it asks its own object.
const statTimeout = 30 * time.Second

// The states of a lookup: queued behind statFetches others, running, or
// abandoned while queued: by a stat that came first (it asks its own
// object instead of waiting for a slot), because the object was read or
// taken by the small-file prefetch meanwhile (its stat costs no request
// then), or after statTimeout.
const (
	lookupQueued int32 = iota
	lookupRunning
	lookupAbandoned
)

// mtimeEntry is one object's lookup. twin, t and ok are set before done
// is closed.
type mtimeEntry struct {
	state atomic.Int32
	done  chan struct{}
	twin  fs.Object // the looked-up copy of the listed object
	t     time.Time
	ok    bool
	used  atomic.Bool // a stat was answered from it
}

func newStatAhead(on bool, small *smallAhead, hits *Hits) *statAhead {
	return &statAhead{on: on, small: small, sem: make(chan struct{}, statFetches), hits: hits, twinnable: twinnableBackend}
}

// twinnableBackend is statAhead.twinnable: objects of rclone's s3 and
// oracleobjectstorage backends, pointers to structs of plain fields
// (strings, numbers, a time, a metadata map set whole, pointers to
// strings set whole) whose mtime comes from a HEAD made once
// (readMetaData). Another backend's object could share state with its
// copy, so it is not twinned and its stats go to it as before.
func twinnableBackend(o fs.Object) bool {
	t := reflect.TypeOf(o)
	if t == nil || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return false
	}
	switch t.Elem().PkgPath() {
	case "github.com/rclone/rclone/backend/s3", "github.com/rclone/rclone/backend/oracleobjectstorage":
		return true
	}
	return false
}

// twinOf is a shallow copy of o (a pointer to a struct), which must not
// change while it is copied.
func twinOf(o fs.Object) fs.Object {
	v := reflect.ValueOf(o)
	cp := reflect.New(v.Elem().Type())
	cp.Elem().Set(v.Elem())
	return cp.Interface().(fs.Object)
}

// listed records the state of o as listed, for later lookups, when
// statAhead is on and o can be twinned. Call it before anyone else
// holds o (as a listing is wrapped).
func (s *statAhead) listed(o *Object) {
	if s.on && s.twinnable(o.Object) {
		o.asListed = twinOf(o.Object)
	}
}

// modTime is o's mtime: from its lookup when one holds it (waiting for
// one running while ctx lasts), otherwise the listed object's own. A stat
// that continues the name order of o's listing starts the lookups after
// it.
func (s *statAhead) modTime(ctx context.Context, o *Object) time.Time {
	if o.asListed == nil {
		return o.Object.ModTime(ctx)
	}
	s.passed(o)
	if e := o.mtime.Load(); e != nil {
		if e.state.CompareAndSwap(lookupQueued, lookupAbandoned) || e.state.Load() == lookupAbandoned {
			o.mtime.CompareAndSwap(e, nil)
			return s.own(ctx, o)
		}
		select {
		case <-e.done:
		case <-ctx.Done():
			return s.own(ctx, o)
		}
		if e.ok {
			e.used.Store(true)
			s.hits.mtime()
			return e.t
		}
		o.mtime.CompareAndSwap(e, nil)
	}
	return s.own(ctx, o)
}

// own is the listed object's own mtime (its HEAD, the first time); o is
// then never looked up ahead, which would cost a HEAD its own stat no
// longer makes.
func (s *statAhead) own(ctx context.Context, o *Object) time.Time {
	o.asked.Store(true)
	return o.Object.ModTime(ctx)
}

// current is the object o's size and hash come from: the twin of the
// lookup a stat was answered from, else the listed object.
func (o *Object) current() fs.Object {
	if e := o.mtime.Load(); e != nil && e.used.Load() {
		return e.twin
	}
	return o.Object
}

// passed records a stat of o in its listing's order and, when it
// continues a walk of stats in that order, starts lookups of the objects
// up to statWindow after it that have none and were not read. While a
// reader opens the files in the same order, the files the small-file
// prefetch fetches are left to it, whose GETs bring their mtimes before
// the reader stats them: a lookup would only add a HEAD. Larger files,
// which the prefetch leaves, are statted before their GET, so their
// lookups save the reader a round trip per file. Files skipped so stay
// due for lookups (statNext does not pass them), should stats in order go
// on without reads.
//
// A stat of a file already opened, at or before the file opened last, is
// left out: it is a reader's own, or rclone's when it lets a file go.
//
// A reader is at o when the file opened last is o, or one or two before
// it, or only empty files lie between them: rclone's cache never opens an
// empty file (nor one it holds), so their opens go unseen. Before any
// open, a directory whose first files are empty (an __init__.py) may be
// a reader's as well while o is among or just after them; a stat among
// them looks up the directory's first file with bytes, as nothing fetches
// it before an open.
func (s *statAhead) passed(o *Object) {
	if o.dir == nil {
		return
	}
	var next []*Object
	s.small.mu.Lock()
	d := o.dir
	d.sortByName()
	if o.opened && o.idx <= d.opened {
		// A file opened before, at or behind the file opened last:
		// rclone's cache stats a file again when it lets it go, in its
		// release, which the kernel sends once the reader has moved on.
		// Not a step of a walk: it starts nothing and the walk stays.
		s.small.mu.Unlock()
		return
	}
	prev := d.statLast
	if (o.idx == prev+1 || o.idx == prev) && prev >= 0 {
		var reading, lead bool
		if d.opened >= 0 {
			reading = o.idx >= d.opened && (o.idx <= d.opened+2 || d.emptyRun(d.opened+1, o.idx))
		} else {
			reading = len(d.objs) > 0 && d.objs[0].Size() == 0 && d.emptyRun(0, o.idx)
			// Every object up to o is empty: the first one with bytes
			// after o is the directory's first, unless statNext is past it.
			lead = reading && o.Size() == 0 && d.statNext <= o.idx+1
		}
		from, to := max(o.idx+1, d.statNext), min(o.idx+1+statWindow, len(d.objs))
		for _, x := range d.objs[from:max(from, to)] {
			first := lead && x.Size() != 0 // the directory's first file with bytes
			lead = lead && !first
			if !reading || first || !s.small.fetches(x) {
				next = append(next, x)
			}
		}
		if !reading {
			d.statNext = max(d.statNext, to)
		}
	}
	d.statLast = o.idx
	s.small.mu.Unlock()
	for _, x := range next {
		if x.asListed == nil || x.asked.Load() || x.read.Load() {
			continue
		}
		e := &mtimeEntry{done: make(chan struct{})}
		if x.mtime.CompareAndSwap(nil, e) {
			s.small.work.Go(func() { s.fetch(x, e) })
		}
	}
}

// fetch makes o's lookup e: a new twin of o as listed reads its metadata
// (the HEAD), unless, while e was queued, a stat of o abandoned it or o
// was read or taken by the small-file prefetch.
func (s *statAhead) fetch(o *Object, e *mtimeEntry) {
	defer close(e.done)
	ctx, cancel := context.WithTimeout(context.Background(), statTimeout)
	defer cancel()
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		e.state.CompareAndSwap(lookupQueued, lookupAbandoned)
		return
	}
	defer func() { <-s.sem }()
	if o.read.Load() || s.small.holds(o) {
		// Read, or being fetched by the prefetch, while queued: its own
		// stat costs no request now or soon.
		e.state.CompareAndSwap(lookupQueued, lookupAbandoned)
		return
	}
	if !e.state.CompareAndSwap(lookupQueued, lookupRunning) {
		return
	}
	twin := twinOf(o.asListed)
	m, ok := twin.(fs.Metadataer)
	if !ok {
		return
	}
	// The metadata read reports a failed HEAD; ModTime would hide it
	// behind the time now.
	if _, err := m.Metadata(ctx); err != nil {
		return
	}
	e.twin, e.t, e.ok = twin, twin.ModTime(ctx), true
}

// forget drops o's lookup (its content or mtime is being replaced).
func (s *statAhead) forget(o *Object) { o.mtime.Store(nil) }
