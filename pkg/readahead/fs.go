package readahead

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"time"

	"github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/hash"
)

// Fs wraps an rclone fs.Fs: objects it lists or returns are read through
// a Reader, and small objects opened one after another in listing order
// are fetched ahead (see small.go). Everything else (writes, renames,
// server-side copies, deletes) passes to the wrapped Fs unchanged, with
// objects unwrapped where the backend needs its own type.
type Fs struct {
	fs.Fs
	opt      Options
	features *fs.Features
	small    *smallAhead
	stat     *statAhead
	mem      *memory
	hits     Hits
}

// Wrap returns base with the read path of this package.
func Wrap(base fs.Fs, opt Options) *Fs {
	f := &Fs{Fs: base, opt: opt.withDefaults()}
	f.mem = newMemory(f.opt)
	f.small = newSmallAhead(f.opt, f.mem)
	f.stat = newStatAhead(f.opt.StatAhead, f.small, &f.hits)
	f.features = f.wrapFeatures(base.Features())
	return f
}

// Release drops the small files fetched ahead and not read yet and the
// buffers kept for reuse, for an idle process to give their memory back.
// Fetches still in flight are cancelled; their bytes go back as each ends.
func (f *Fs) Release() {
	f.small.release()
	f.mem.trim()
}

// MemoryHeld returns the bytes the Fs holds for reads now and the most it
// has held at once; both stay within Options.MemoryLimit.
func (f *Fs) MemoryHeld() (now, peak int64) { return f.mem.held() }

// Hits returns how reads were served so far (see Hits).
func (f *Fs) Hits() HitCounts { return f.hits.Counts() }

// SmallFetches returns how many small files may be fetched at once now
// (see fetchLimit), or 0 when the Fs fetches none ahead (no memory).
func (f *Fs) SmallFetches() int {
	if f.opt.MemoryLimit <= 0 {
		return 0
	}
	return f.small.limit.current()
}

// Features returns the wrapped Fs's features with object-taking and
// object-returning functions adapted to this wrapper.
func (f *Fs) Features() *fs.Features { return f.features }

func (f *Fs) wrapFeatures(base *fs.Features) *fs.Features {
	ft := *base
	ft.UnWrap = func() fs.Fs { return f.Fs }
	if c := base.Copy; c != nil {
		ft.Copy = func(ctx context.Context, src fs.Object, remote string) (fs.Object, error) {
			return f.wrapObject(c(ctx, unwrap(src), remote))
		}
	}
	if m := base.Move; m != nil {
		ft.Move = func(ctx context.Context, src fs.Object, remote string) (fs.Object, error) {
			return f.wrapObject(m(ctx, unwrap(src), remote))
		}
	}
	if dm := base.DirMove; dm != nil {
		ft.DirMove = func(ctx context.Context, src fs.Fs, srcRemote, dstRemote string) error {
			if w, ok := src.(*Fs); ok {
				src = w.Fs
			}
			return dm(ctx, src, srcRemote, dstRemote)
		}
	}
	if ps := base.PutStream; ps != nil {
		ft.PutStream = func(ctx context.Context, in io.Reader, src fs.ObjectInfo, options ...fs.OpenOption) (fs.Object, error) {
			return f.wrapObject(ps(ctx, in, src, options...))
		}
	}
	if pu := base.PutUnchecked; pu != nil {
		ft.PutUnchecked = func(ctx context.Context, in io.Reader, src fs.ObjectInfo, options ...fs.OpenOption) (fs.Object, error) {
			return f.wrapObject(pu(ctx, in, src, options...))
		}
	}
	if lr := base.ListR; lr != nil {
		ft.ListR = func(ctx context.Context, dir string, callback fs.ListRCallback) error {
			return lr(ctx, dir, func(entries fs.DirEntries) error { return callback(f.wrapEntries(entries, nil)) })
		}
	}
	if lp := base.ListP; lp != nil {
		ft.ListP = func(ctx context.Context, dir string, callback fs.ListRCallback) error {
			order := newDirOrder()
			return lp(ctx, dir, func(entries fs.DirEntries) error { return callback(f.wrapEntries(entries, order)) })
		}
	}
	return &ft
}

// List lists dir of the wrapped Fs with its objects wrapped.
func (f *Fs) List(ctx context.Context, dir string) (fs.DirEntries, error) {
	entries, err := f.Fs.List(ctx, dir)
	if err != nil {
		return nil, err
	}
	return f.wrapEntries(entries, newDirOrder()), nil
}

// NewObject finds remote in the wrapped Fs and wraps it.
func (f *Fs) NewObject(ctx context.Context, remote string) (fs.Object, error) {
	return f.wrapObject(f.Fs.NewObject(ctx, remote))
}

// Put uploads through the wrapped Fs and wraps the result.
func (f *Fs) Put(ctx context.Context, in io.Reader, src fs.ObjectInfo, options ...fs.OpenOption) (fs.Object, error) {
	return f.wrapObject(f.Fs.Put(ctx, in, src, options...))
}

// wrapEntries wraps the objects of (one page of) a listing. order, for a
// listing of one directory (not a recursive one), records the objects'
// order for the small-file prefetch.
func (f *Fs) wrapEntries(entries fs.DirEntries, order *dirOrder) fs.DirEntries {
	out := make(fs.DirEntries, len(entries))
	var objs []*Object
	for i, e := range entries {
		o, ok := e.(fs.Object)
		if !ok {
			out[i] = e
			continue
		}
		w := &Object{Object: o, f: f}
		f.stat.listed(w)
		objs = append(objs, w)
		out[i] = w
	}
	if order != nil {
		f.small.add(order, objs)
	}
	return out
}

func (f *Fs) wrapObject(o fs.Object, err error) (fs.Object, error) {
	if err != nil || o == nil {
		return o, err
	}
	if _, ok := o.(*Object); ok {
		return o, nil
	}
	return &Object{Object: o, f: f}, nil
}

// unwrap returns the backend's object behind o: after a stat answered
// from a lookup, the lookup's copy, which has the size and hash the stat
// saw (a server-side copy sizes its parts by them).
func unwrap(o fs.Object) fs.Object {
	if w, ok := o.(*Object); ok {
		return w.current()
	}
	return o
}

// Object is an object of the wrapped Fs read through this package.
type Object struct {
	fs.Object
	f   *Fs
	dir *dirOrder // the listing it came from, if any
	idx int       // its place in that listing
	// opened: an open of it was seen in the listing's order (guarded by
	// the small-file prefetch's mu, as dir is).
	opened bool
	// asListed is a copy of the wrapped object as listed, from which
	// statAhead makes its lookups (nil: no lookups); mtime is the
	// lookup, if any.
	asListed fs.Object
	mtime    atomic.Pointer[mtimeEntry]
	asked    atomic.Bool // a stat asked the wrapped object itself
	// read: a GET of the wrapped object was answered. On S3 the answer
	// carries the metadata a HEAD would read, so a stat after it costs
	// no request and statAhead looks nothing up for it.
	read atomic.Bool
}

// UnWrap returns the wrapped Fs's object.
func (o *Object) UnWrap() fs.Object { return o.Object }

// Update replaces the object's content through the wrapped object (an
// upload onto a listed object: MOUNT_CACHED's write-back, MOUNT's writes).
// A prefetch of the old content is dropped, before the upload and again
// after it (one scheduled while it ran), so no later open reads it.
func (o *Object) Update(ctx context.Context, in io.Reader, src fs.ObjectInfo, options ...fs.OpenOption) error {
	o.f.small.forget(o)
	o.f.stat.forget(o)
	err := o.Object.Update(ctx, in, src, options...)
	o.f.small.forget(o)
	o.f.stat.forget(o)
	return err
}

// ModTime returns the object's mtime, looked up ahead with
// Options.StatAhead when a caller stats objects in name order.
func (o *Object) ModTime(ctx context.Context) time.Time { return o.f.stat.modTime(ctx, o) }

// Size returns the object's size: as its lookup found it once a stat was
// answered from one (see statAhead), else as the wrapped object has it.
func (o *Object) Size() int64 { return o.current().Size() }

// Hash returns the object's hash of type t, like Size.
func (o *Object) Hash(ctx context.Context, t hash.Type) (string, error) {
	return o.current().Hash(ctx, t)
}

// SetModTime sets the object's mtime through the wrapped object and drops
// any mtime looked up ahead.
func (o *Object) SetModTime(ctx context.Context, t time.Time) error {
	o.f.stat.forget(o)
	err := o.Object.SetModTime(ctx, t)
	o.f.stat.forget(o)
	return err
}

// Remove deletes the object and drops any prefetch of it.
func (o *Object) Remove(ctx context.Context) error {
	o.f.small.forget(o)
	return o.Object.Remove(ctx)
}

// Open reads the object: from a small-file prefetch when one holds it,
// otherwise through a Reader of the requested range (or, with
// Options.SmallFilesOnly, straight from the wrapped object).
func (o *Object) Open(ctx context.Context, options ...fs.OpenOption) (io.ReadCloser, error) {
	o.f.small.opening(o)
	size := o.Size()
	start, limit := int64(0), int64(-1)
	for _, opt := range options {
		switch x := opt.(type) {
		case *fs.RangeOption:
			start, limit = x.Decode(size)
		case *fs.SeekOption:
			start = x.Offset
		default:
			if opt.Mandatory() {
				return o.get(ctx, options...) // not ours to interpret
			}
		}
	}
	if size < 0 {
		return o.get(ctx, options...)
	}
	end := size
	if limit >= 0 {
		end = min(size, start+limit)
	}
	if start >= end {
		return io.NopCloser(eofReader{}), nil
	}
	if rc := o.f.small.open(ctx, o, start, end); rc != nil {
		o.f.hits.small()
		return rc, nil
	}
	if o.f.opt.SmallFilesOnly {
		return o.get(ctx, options...)
	}
	r := newReader(ctx, o.openRange, start, end, o.f.opt, o.f.mem)
	r.hits = &o.f.hits
	return r, nil
}

// At is an object opened for reads in any order (OpenAt): the FUSE
// server's read requests, which arrive concurrently and out of order.
// ReadAt returns up to len(p) bytes at off, either in p or, without a
// copy, in memory held until release is called; io.EOF at or past the
// end. ReadAt may be called concurrently (not with Close); release may
// come later, from any goroutine, also after Close.
type At interface {
	ReadAt(p []byte, off int64) (data []byte, release func(), err error)
	Close() error
}

// OpenAt opens the whole object for ReadAt: from a small-file prefetch
// when one holds it (the open counts in the listing order, as Open does),
// otherwise through a Reader. It fails for an object of unknown size.
func (o *Object) OpenAt(ctx context.Context) (At, error) {
	o.f.small.opening(o)
	size := o.Size()
	if size < 0 {
		return nil, errors.New("readahead: object of unknown size")
	}
	if size == 0 {
		return emptyAt{}, nil
	}
	if rc, ok := o.f.small.open(ctx, o, 0, size).(*smallReader); ok && rc != nil {
		o.f.hits.small()
		return smallAt{rc}, nil
	}
	r := newReader(ctx, o.openRange, 0, size, o.f.opt, o.f.mem)
	r.hits = &o.f.hits
	return r, nil
}

// smallAt is a prefetched small file read with ReadAt.
type smallAt struct{ r *smallReader }

func (s smallAt) ReadAt(p []byte, off int64) ([]byte, func(), error) {
	if off < 0 || off >= int64(len(s.r.data)) {
		return nil, func() {}, io.EOF
	}
	// The data is the prefetch's own, never reused: no hold needed.
	return s.r.data[off:min(off+int64(len(p)), int64(len(s.r.data)))], func() {}, nil
}

func (s smallAt) Close() error { return s.r.Close() }

// emptyAt is an empty object.
type emptyAt struct{}

func (emptyAt) ReadAt([]byte, int64) ([]byte, func(), error) { return nil, func() {}, io.EOF }
func (emptyAt) Close() error                                 { return nil }

// openRange is a RangeOpener of the wrapped object.
func (o *Object) openRange(ctx context.Context, off, n int64) (io.ReadCloser, error) {
	return o.get(ctx, &fs.RangeOption{Start: off, End: off + n - 1})
}

// get opens the wrapped object (a GET) and, once it answered, marks o
// read. Every read of the wrapped object goes through it.
func (o *Object) get(ctx context.Context, options ...fs.OpenOption) (io.ReadCloser, error) {
	rc, err := o.Object.Open(ctx, options...)
	if err == nil {
		o.read.Store(true)
	}
	return rc, err
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }
