package fuseserver

import (
	"context"
	"errors"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	rfs "github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/vfs"
	"golang.org/x/sys/unix"

	"github.com/bucket-csi/bucket-csi/pkg/cachejournal"
)

// A read-write open of a node that passthrough handles hold must be
// answered with passthrough too (the kernel's one I/O mode per inode). Its
// reads and writes go through rclone (FOPEN_DIRECT_IO), but a shared
// writable mapping of it writes the cache file directly, behind rclone,
// and may go on doing so after the handle's release: the mapping holds
// the kernel's backing file, and the kernel forgets the node only after
// the last mapping is gone (docs/benchmarks.md, "What narrows the
// problem"). So:
//
//  1. Before such an open is answered, the write journal records the file
//     as mapped (cachejournal's Written.Mapped): a server killed from here
//     on leaves Repair to mark the file for upload.
//  2. The node keeps a descriptor of each cache file such opens were given
//     (one per file) and the fingerprint of the object it last held clean
//     (ptMark), refreshed at each release and poke while the file is
//     still the path's clean cache file: an upload of writes made through
//     rclone moves it on.
//  3. Whenever the node is left with no handle open, the kernel is asked
//     to drop its entry (and again every pokeInterval while it is marked),
//     so the FORGET follows the last mapping's end.
//  4. At the FORGET (settle), rclone's item of the path is opened first
//     (rclone checks the object then, and drops its cache file if the
//     object changed outside), and each marked file is then written
//     through the VFS, so rclone holds the path dirty and uploads it
//     whole: one byte read from it and written back while it is still the
//     path's cache file; all of it where rclone dropped that file since
//     (cache eviction, reset, or the object's change) and the path holds
//     nothing newer (not dirty, the object the mark last held). Where the
//     path holds something newer, the two cannot be merged: the marked
//     file is saved beside the path, as a new file named
//     <name>.conflict-<UTC time> (conflictName), and counted. Then the
//     journal's mark is cleared. A settle waits while the path has another
//     node with handles open or marks, and runs with opens, creates and
//     truncates held off, so its writes never race an application's. A
//     settle that fails is tried again by poke, after 10 s, 20 s, ... up
//     to settleTries times; the journal keeps the mark meanwhile.
//  5. When the server stops, every node still marked and every settle
//     still to retry is settled the same way, its journal mark kept for
//     the next server (a lazily unmounted mapping may still write).
//
// Limits (docs/benchmarks.md, "Read-write volumes"): an fsync before the
// settle does not upload what a mapping wrote; a mapping that outlives its
// server writes a file the next server uploads only as Repair found it;
// an upload and an eviction of the marked file within one pokeInterval
// and without a release between leave the mark's fingerprint behind, and
// the settle then saves a conflict copy where it could have written the
// path. A settle uploads the file even if no mapping wrote it: a cost
// paid only for read-write opens made while passthrough readers held the
// file.

// ptMark is a cache file a read-write passthrough open was given.
type ptMark struct {
	fi os.FileInfo // the cache file, as given to the kernel
	f  *os.File    // a descriptor of its own, kept until settled
	// fingerprint is of the object the cache file last held clean.
	fingerprint string
}

// ptRetry is a settle that failed, to be tried again by poke.
type ptRetry struct {
	path  string
	marks []*ptMark
	tries int       // failed settles so far
	at    time.Time // not before
}

const (
	// pokeInterval is how often the kernel is asked again to drop the
	// entry of a marked node with no handle open (a lookup since the last
	// request may have cached it anew), and failed settles are looked at.
	pokeInterval = 10 * time.Second
	// settleTries bounds the settles of one set of marks: after that many
	// failures (the last about 15 minutes after the first) the marks are
	// given up, and the journal's mark left to the next server's Repair.
	settleTries = 8
	// retryCap bounds the wait between two settles of the same marks.
	retryCap = 5 * time.Minute
)

// retryAfter is the wait after the tries-th failed settle of some marks:
// pokeInterval, doubled after each failure, at most retryCap.
func retryAfter(tries int) time.Duration {
	d := pokeInterval
	for i := 1; i < tries && d < retryCap; i++ {
		d *= 2
	}
	return min(d, retryCap)
}

// markMapped records, before a read-write open of node id (whose mutex is
// held) is answered with passthrough, that a shared mapping may write its
// backing file from now on. False when the journal could not record it.
func (p *passthroughFS) markMapped(id uint64, n *ptNode) bool {
	for _, m := range n.mapped {
		if os.SameFile(m.fi, n.backing.fi) {
			return true // marked already
		}
	}
	path, ok := p.paths.path(id)
	if !ok {
		return false
	}
	fd, err := unix.Dup(int(n.backing.f.Fd()))
	if err != nil {
		p.log.Error("read-write open refused: the cache file could not be kept for a shared mapping", "path", path, "err", err)
		return false
	}
	f := os.NewFile(uintptr(fd), n.backing.f.Name())
	if err := p.j.Mapped(path); err != nil {
		f.Close()
		p.log.Error("read-write open refused: the write journal could not record a shared mapping", "path", path, "err", err)
		return false
	}
	n.mapped = append(n.mapped, &ptMark{fi: n.backing.fi, f: f, fingerprint: n.backing.fingerprint})
	return true
}

// refresh records, for each mark of node id (whose mutex is held) that is
// still the path's cache file and clean, the object it now holds: after
// rclone uploaded writes made through it, a later drop of the file is not
// taken for a conflict.
func (p *passthroughFS) refresh(id uint64, n *ptNode) {
	if n.mapped == nil {
		return
	}
	path, ok := p.paths.path(id)
	if !ok {
		return
	}
	info, err := p.cache.Info(path)
	if err != nil || info.Dirty || info.Fingerprint == "" {
		return
	}
	// Read after the metadata: rclone removes both and creates a new file
	// when it drops a cached copy.
	now, err := os.Stat(p.cache.DataPath(path))
	if err != nil {
		return
	}
	for _, m := range n.mapped {
		if os.SameFile(m.fi, now) {
			m.fingerprint = info.Fingerprint
		}
	}
}

// forgetSoon asks the kernel to drop node id's entry (without blocking the
// caller), so the node is forgotten once no mapping holds it.
func (p *passthroughFS) forgetSoon(id uint64) {
	parent, name, ok := p.paths.attachedKey(id)
	if !ok {
		return // unlinked or replaced: the kernel dropped the entry
	}
	p.mu.Lock()
	srv := p.srv
	p.mu.Unlock()
	go func() {
		if st := srv.EntryNotify(parent, name); !st.Ok() && st != fuse.ENOENT {
			p.log.Debug("dropping the entry of a mapped file failed: it is settled when the kernel forgets it", "name", name, "status", st.String())
		}
	}()
}

// poke, every pokeInterval until ctx ends, refreshes the marks' objects,
// asks for the entries of marked nodes with no handle open to be dropped,
// and starts the failed settles that are due again.
func (p *passthroughFS) poke(ctx context.Context) {
	every(ctx, pokeInterval, func() {
		for _, e := range p.nodes.snapshot() {
			e.v.mu.Lock()
			p.refresh(e.id, e.v)
			idle := e.v.mapped != nil && e.v.pt == 0 && e.v.cached == 0
			e.v.mu.Unlock()
			if idle {
				p.forgetSoon(e.id)
			}
		}
		now := time.Now()
		p.mu.Lock()
		var wait []*ptRetry
		for _, r := range p.retries {
			if now.Before(r.at) || p.stopping.Load() {
				wait = append(wait, r)
			} else {
				p.settling.Add(1)
				go p.settleTry(r)
			}
		}
		p.retries = wait
		p.mu.Unlock()
	})
}

func (p *passthroughFS) Forget(id, nlookup uint64) {
	path, attached := p.paths.attachedPath(id)
	p.RawFileSystem.Forget(id, nlookup)
	if _, held := p.paths.path(id); held {
		return // the kernel still holds lookups of it
	}
	n := p.nodes.getIf(id)
	if n == nil {
		return
	}
	n.mu.Lock()
	p.refresh(id, n)
	marks := n.mapped
	n.mapped = nil
	p.done(id)
	n.mu.Unlock()
	if marks == nil {
		return
	}
	if !attached {
		closeMarks(marks) // deleted or replaced: nothing of it is uploaded
		return
	}
	p.mu.Lock()
	p.settling.Add(1) // no FORGET comes once finish has begun
	p.mu.Unlock()
	go p.settleTry(&ptRetry{path: path, marks: marks})
}

// settleTry settles r (a settling count it ends), and on failure keeps it
// for poke to try again, or gives it up after settleTries failures.
func (p *passthroughFS) settleTry(r *ptRetry) {
	defer p.settling.Done()
	if p.settle(r.path, r.marks, true) {
		return
	}
	r.tries++
	if r.tries >= settleTries && !p.stopping.Load() {
		p.log.Error("a file a shared mapping may have written was given up after repeated failures: the write journal keeps it marked for the next server", "path", r.path, "tries", r.tries)
		closeMarks(r.marks)
		return
	}
	r.at = time.Now().Add(retryAfter(r.tries))
	p.mu.Lock()
	p.retries = append(p.retries, r) // finish settles them once more
	p.mu.Unlock()
}

// finish settles, once the server is unmounted and before the VFS drains
// its uploads, every node still marked and every settle still to retry;
// the journal marks stay.
func (p *passthroughFS) finish() {
	p.mu.Lock()
	p.stopping.Store(true) // settles under way stop waiting; poke starts none
	p.mu.Unlock()
	p.settling.Wait()
	p.mu.Lock()
	retries := p.retries
	p.retries = nil
	p.mu.Unlock()
	for _, r := range retries {
		if !p.settle(r.path, r.marks, false) {
			closeMarks(r.marks)
		}
	}
	for _, e := range p.nodes.snapshot() {
		e.v.mu.Lock()
		marks := e.v.mapped
		e.v.mapped = nil
		e.v.mu.Unlock()
		if marks == nil {
			continue
		}
		if path, ok := p.paths.attachedPath(e.id); !ok || !p.settle(path, marks, false) {
			closeMarks(marks)
		}
	}
}

// settle has rclone upload what shared mappings wrote into marks (files
// of path), and closes the marks when it did. With final (a FORGET or a
// retry), it first waits while another node of path has handles or marks,
// and clears the journal's mark after. Once the server stops (finish),
// nothing waits and the mark stays for the next server. False, with the
// error logged and the marks open, when it failed.
func (p *passthroughFS) settle(path string, marks []*ptMark, final bool) bool {
	p.fix.Lock()
	for final && !p.stopping.Load() && p.busy(path) {
		p.fix.Unlock()
		time.Sleep(200 * time.Millisecond)
		p.fix.Lock()
	}
	defer p.fix.Unlock()
	if err := p.rewrite(path, marks); err != nil {
		p.log.Error("a file a shared mapping may have written was not marked for upload: the write journal keeps it marked", "path", path, "err", err)
		return false
	}
	closeMarks(marks)
	p.log.Info("a file a shared mapping may have written is marked for upload", "path", path)
	if final && !p.stopping.Load() {
		if err := p.j.Settled(path); err != nil {
			p.log.Warn("the write journal keeps a settled mapping: the next server uploads the file once more", "path", path, "err", err)
		}
	}
	return true
}

// busy reports whether a node of path other than a forgotten one has
// handles open or marks, or is being released. Call with fix held (no
// open, create or truncate runs then); a node of path whose mutex is
// taken counts as busy.
func (p *passthroughFS) busy(path string) bool {
	for _, e := range p.nodes.snapshot() {
		if at, ok := p.paths.path(e.id); !ok || at != path {
			continue
		}
		if !e.v.mu.TryLock() {
			return true
		}
		inUse := e.v.pt+e.v.cached > 0 || e.v.mapped != nil
		e.v.mu.Unlock()
		if inUse {
			return true
		}
	}
	return false
}

// rewrite writes marks through the VFS at path, so rclone holds the file
// dirty and uploads it whole: the mark that is still the path's cache
// file by one byte; else the first whose file rclone dropped, whole, if
// the path holds nothing newer. Every other mark is saved as a conflict
// copy beside the path.
func (p *passthroughFS) rewrite(path string, marks []*ptMark) error {
	h, err := p.v.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	// Open rclone's item before anything is compared: its check of the
	// object drops the cache file now if the object changed outside, and
	// an open item is never dropped.
	if _, err := h.Seek(0, io.SeekEnd); err != nil {
		h.Close()
		return err
	}
	now, err := os.Stat(p.cache.DataPath(path))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		h.Close()
		return err
	}
	ordered := make([]*ptMark, 0, len(marks))
	for _, m := range marks {
		if now != nil && os.SameFile(m.fi, now) {
			ordered = append([]*ptMark{m}, ordered...) // it holds every write made through rclone
		} else {
			ordered = append(ordered, m)
		}
	}
	wrote := false // the path holds a mark's bytes now
	for _, m := range ordered {
		switch {
		case now != nil && os.SameFile(m.fi, now):
			err = p.touch(h, m)
			wrote = true
		case !wrote && p.unchanged(path, m):
			err = p.copyAll(path, h, m)
			wrote = true
		default:
			err = p.keepConflict(path, m)
		}
		if err != nil {
			h.Close()
			return err
		}
	}
	return h.Close()
}

// touch writes byte 0 of m, the path's cache file in rclone's open item,
// back through h: rclone then holds the file dirty.
func (p *passthroughFS) touch(h vfs.Handle, m *ptMark) error {
	var b [1]byte
	switch n, err := m.f.ReadAt(b[:], 0); {
	case n == 0 && err == io.EOF:
		return nil // empty: nothing a mapping could write
	case err != nil && n == 0:
		return err
	}
	_, err := h.WriteAt(b[:], 0)
	return err
}

// unchanged reports whether path holds nothing newer than m, a file rclone
// dropped: its cache not dirty, its object the one m last held.
func (p *passthroughFS) unchanged(path string, m *ptMark) bool {
	if info, err := p.cache.Info(path); err == nil && info.Dirty {
		return false
	}
	node, err := p.v.Stat(path)
	if err != nil {
		return false
	}
	o, ok := node.DirEntry().(rfs.Object)
	return ok && o != nil && rfs.Fingerprint(context.Background(), o, p.v.Opt.FastFingerprint) == m.fingerprint
}

// copyAll writes all of m through h, a handle of path, and records that
// the whole file is the application's (Repair must not fetch the bucket's
// bytes over it).
func (p *passthroughFS) copyAll(path string, h vfs.Handle, m *ptMark) error {
	size, err := copyInto(h, m.f)
	if err != nil {
		return err
	}
	if err := h.Truncate(size); err != nil {
		return err
	}
	return p.j.Wrote(path, cachejournal.Written{Tail: true})
}

// keepConflict saves m, which cannot go to path, as a new file beside it
// (conflictName), uploaded like any other.
func (p *passthroughFS) keepConflict(path string, m *ptMark) error {
	at := time.Now()
	for i := 0; ; i++ {
		name := conflictName(path, at, i)
		h, err := p.v.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, os.ErrExist) && i < 100 {
			continue
		}
		if err != nil {
			return err
		}
		_, err = copyInto(h, m.f)
		if cerr := h.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = p.j.Wrote(name, cachejournal.Written{Tail: true})
		}
		if err != nil {
			return err
		}
		p.conflicts.Add(1)
		p.log.Warn("a file a shared mapping wrote was dropped by the cache and its path holds newer content (the object changed outside, or a write went through the server): not merged, the mapping's file is kept beside it", "path", path, "kept", name)
		return nil
	}
}

// conflictName is the name of the i-th conflict copy of path saved at at:
// <path>.conflict-<UTC time>, then -1, -2, ... where that exists.
func conflictName(path string, at time.Time, i int) string {
	name := path + ".conflict-" + at.UTC().Format("20060102T150405Z")
	if i > 0 {
		name += "-" + strconv.Itoa(i)
	}
	return name
}

// copyInto writes all of f through h from offset 0 and returns its size.
func copyInto(h vfs.Handle, f *os.File) (int64, error) {
	buf := make([]byte, 1<<20)
	var off int64
	for {
		n, err := f.ReadAt(buf, off)
		if n > 0 {
			if _, werr := h.WriteAt(buf[:n], off); werr != nil {
				return off, werr
			}
			off += int64(n)
		}
		if err == io.EOF {
			return off, nil
		} else if err != nil {
			return off, err
		}
	}
}

// closeMarks closes the marks' descriptors.
func closeMarks(marks []*ptMark) {
	for _, m := range marks {
		m.f.Close()
	}
}
