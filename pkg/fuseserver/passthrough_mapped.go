package fuseserver

import (
	"context"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
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
//     (ptMark), refreshed at each release, FORGET and poke while the file
//     is still the path's clean cache file: an upload of writes made
//     through rclone moves it on.
//  3. Whenever the node is left with no handle open, the kernel is asked
//     to drop its entry (and again every pokeInterval while it is marked),
//     so the FORGET follows the last mapping's end.
//  4. At the FORGET the node's marks are settled (passthrough_settle.go):
//     written through the VFS so that rclone uploads them, or, where the
//     path holds newer content, saved beside it as a conflict copy. A
//     settle that fails is tried again while the server runs; renames
//     and unlinks made through the server move or cancel it.
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

// refreshNode refreshes the marks of node id, whose mutex is held.
func (p *passthroughFS) refreshNode(id uint64, n *ptNode) {
	if n.mapped == nil {
		return
	}
	if path, ok := p.paths.path(id); ok {
		p.refresh(path, n.mapped)
	}
}

// refresh records, for each of marks (files of path, not being settled)
// that is still the path's cache file and clean, the object it now holds:
// after rclone uploaded writes made through it, a later drop of the file
// is not taken for a conflict.
func (p *passthroughFS) refresh(path string, marks []*ptMark) {
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
	for _, m := range marks {
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
			p.refreshNode(e.id, e.v)
			idle := (e.v.mapped != nil || e.v.writer != nil) && e.v.pt == 0 && e.v.cached == 0
			w := e.v.writer
			e.v.mu.Unlock()
			if idle {
				p.forgetSoon(e.id)
			}
			if w != nil {
				p.retryWriter(e.id)
			}
		}
		p.retryDue()
	})
}

func (p *passthroughFS) Forget(id, nlookup uint64) {
	// No mapping of the node is left: a writer ends, before the inner
	// forget (the creator's handle must be released while the node is
	// known). If it cannot end now, the forget waits with it.
	if n := p.nodes.getIf(id); n != nil {
		n.mu.Lock()
		w := n.writer
		last := w != nil && n.pt == 0 && n.cached == 0 && p.paths.lookups(id) <= nlookup+w.forgets
		if last {
			// Held back; the writer ends off go-fuse's forget path (which
			// starts no other reader meanwhile), then passes it on.
			w.forgets += nlookup
			go p.retryWriter(id)
		}
		p.done(id)
		n.mu.Unlock()
		if last {
			return
		}
	}
	// The path and the last rename or unlink it reflects, read together:
	// later ones are applied to the settle.
	path, attached, seen := p.paths.attachedPathSeq(id)
	p.RawFileSystem.Forget(id, nlookup)
	if _, held := p.paths.path(id); held {
		return // the kernel still holds lookups of it
	}
	n := p.nodes.getIf(id)
	if n == nil {
		return
	}
	n.mu.Lock()
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
	p.refresh(path, marks)
	p.startSettle(&ptSettle{path: path, marks: marks}, seen)
}

// finish settles, once the server is unmounted and before the VFS drains
// its uploads, every settle still to retry and every node still marked;
// the journal marks stay.
func (p *passthroughFS) finish() {
	p.mu.Lock()
	p.stopping.Store(true) // settles under way stop waiting; poke starts none
	p.mu.Unlock()
	p.settling.Wait()
	p.mu.Lock()
	left := p.pending
	p.pending = nil
	p.mu.Unlock()
	for _, e := range p.nodes.snapshot() {
		e.v.mu.Lock()
		if e.v.writer != nil && !p.endWriting(e.id, e.v) {
			p.log.Error("the server stops with a file written through passthrough not handed to the cache: the next server uploads it")
		}
		marks := e.v.mapped
		e.v.mapped = nil
		e.v.mu.Unlock()
		if marks == nil {
			continue
		}
		if path, ok := p.paths.attachedPath(e.id); ok {
			left = append(left, &ptSettle{path: path, marks: marks})
		} else {
			closeMarks(marks)
		}
	}
	for _, s := range left {
		if !p.settle(s, false) && len(s.marks) > 0 {
			p.log.Error("the server stops with files a shared mapping may have written unsettled: where the cache still holds them the next server uploads them, else their bytes are lost", "path", s.path, "files", len(s.marks))
		}
		closeMarks(s.marks)
	}
}

// Rename keeps settles in step: a settle of the renamed file (or of a file
// below a renamed directory) follows it, and one of a file the rename
// replaced is cancelled. It does not run beside a settle's writes, nor
// beside the adopt of either file (passthrough_writer.go).
func (p *passthroughFS) Rename(c <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	p.fix.RLock()
	defer p.fix.RUnlock()
	if dir, ok := p.paths.path(in.NodeId); ok && p.hidden.putBelow(path.Join(dir, oldName)) {
		// Its listing, which moves the objects, would not show the
		// fsync's object of a file written through passthrough below it.
		return fuse.Status(syscall.EXDEV)
	}
	from, _ := p.paths.child(in.NodeId, oldName)
	to, _ := p.paths.child(in.Newdir, newName)
	defer p.holdWriters(from, to)()
	st := p.RawFileSystem.Rename(c, in, oldName, newName)
	if st.Ok() {
		p.followMoves()
	}
	return st
}

// Unlink cancels a settle of the unlinked file: the application deleted
// it, mapped bytes and all. It does not run beside a settle's writes, nor
// beside the file's adopt (passthrough_writer.go).
func (p *passthroughFS) Unlink(c <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	p.fix.RLock()
	defer p.fix.RUnlock()
	id, _ := p.paths.child(h.NodeId, name)
	defer p.holdWriters(id)()
	st := p.RawFileSystem.Unlink(c, h, name)
	if st.Ok() {
		p.followMoves()
	}
	return st
}

// followMoves applies to every pending settle the renames and unlinks the
// path table logged since it last looked (each once, in order). A
// cancelled settle not running is closed at once.
func (p *passthroughFS) followMoves() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pending = slices.DeleteFunc(p.pending, func(s *ptSettle) bool {
		p.catchUp(s)
		if s.cancelled && !s.running {
			closeMarks(s.marks)
			s.marks = nil
			return true
		}
		return false
	})
}

// catchUp applies to s the moves logged after s.seen; p.mu is held.
func (p *passthroughFS) catchUp(s *ptSettle) {
	moves, whole := p.paths.movesAfter(s.seen)
	if !whole {
		p.log.Warn("more renames than kept came while a settle waited: it may miss one", "path", s.path)
	}
	for _, mv := range moves {
		s.apply(mv)
		s.seen = mv.seq
	}
}

// apply moves or cancels s for mv.
func (s *ptSettle) apply(mv pathMove) {
	switch {
	case mv.to == "" && s.path == mv.from:
		s.cancelled = true
	case mv.to == "":
	case below(s.path, mv.from):
		s.path = mv.to + s.path[len(mv.from):]
	case s.path == mv.to:
		s.cancelled = true // replaced by the renamed file
	}
}

// below reports whether name is dir or lies under it.
func below(name, dir string) bool {
	return name == dir || strings.HasPrefix(name, dir+"/")
}
