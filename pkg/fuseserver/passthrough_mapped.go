package fuseserver

import (
	"io"
	"os"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
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
//     and its change time then (ptMark).
//  3. At the node's last passthrough release the kernel is asked to drop
//     its entry, so the FORGET follows the last mapping's end.
//  4. At the FORGET (settle): every marked file whose change time moved is
//     written again through the VFS, so rclone holds it dirty and uploads
//     it: one byte read from it and written back where it is still the
//     cache file, else (rclone replaced the cache file since: the object
//     changed, or eviction) the whole of it. Then the journal's mark is
//     cleared. A settle waits while other handles of the path are open, so
//     its write never races an application's.
//  5. When the server stops, every node still marked is settled the same
//     way, its journal mark kept for the next server (a lazily unmounted
//     mapping may still write).
//
// Change times move with rclone's own writes too, so a file written
// through the server may be uploaded once more: a cost paid only for
// read-write opens made while passthrough readers hold the file.

// ptMark is a cache file a read-write passthrough open was given.
type ptMark struct {
	src   *ptBacking // the node's backing it was taken from
	f     *os.File   // a descriptor of its own, kept until settled
	ctime unix.Timespec
}

// markMapped records, before a read-write open of node id (whose mutex is
// held) is answered with passthrough, that a shared mapping may write its
// backing file from now on. False when the journal could not record it.
func (p *passthroughFS) markMapped(id uint64, n *ptNode) bool {
	for _, m := range n.mapped {
		if m.src == n.backing {
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
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		p.log.Error("read-write open refused: the cache file could not be read", "path", path, "err", err)
		return false
	}
	if err := p.j.Mapped(path); err != nil {
		f.Close()
		p.log.Error("read-write open refused: the write journal could not record a shared mapping", "path", path, "err", err)
		return false
	}
	n.mapped = append(n.mapped, &ptMark{src: n.backing, f: f, ctime: st.Ctim})
	return true
}

// forgetSoon asks the kernel to drop node id's entry (without blocking the
// release calling it), so the node is forgotten once no mapping holds it.
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
	marks := n.mapped
	n.mapped = nil
	n.mu.Unlock()
	p.done(id)
	if marks == nil {
		return
	}
	if !attached {
		closeMarks(marks) // deleted or replaced: nothing of it is uploaded
		return
	}
	p.settling.Add(1)
	go func() {
		defer p.settling.Done()
		p.settle(path, marks, true)
	}()
}

// finish settles, once the server is unmounted and before the VFS drains
// its uploads, every node still marked; the journal marks stay.
func (p *passthroughFS) finish() {
	p.settling.Wait()
	for _, e := range p.nodes.snapshot() {
		e.v.mu.Lock()
		marks := e.v.mapped
		e.v.mapped = nil
		e.v.mu.Unlock()
		if marks == nil {
			continue
		}
		if path, ok := p.paths.attachedPath(e.id); ok {
			p.settle(path, marks, false)
		} else {
			closeMarks(marks)
		}
	}
}

// settle has rclone upload what shared mappings wrote into marks (files
// of path), waiting while other handles of path are open; with clear, the
// journal's mark is cleared once rclone holds the file dirty.
func (p *passthroughFS) settle(path string, marks []*ptMark, clear bool) {
	defer closeMarks(marks)
	for p.fix.Lock(); p.busy(path); p.fix.Lock() {
		p.fix.Unlock()
		time.Sleep(200 * time.Millisecond)
	}
	defer p.fix.Unlock()
	wrote, err := p.rewrite(path, marks)
	if err != nil {
		p.log.Error("a file a shared mapping may have written was not marked for upload: the next server marks it", "path", path, "err", err)
		return
	}
	if wrote {
		p.log.Info("a file a shared mapping may have written is marked for upload", "path", path)
	}
	if clear {
		if err := p.j.Settled(path); err != nil {
			p.log.Warn("the write journal keeps a settled mapping: the next server uploads the file once more", "path", path, "err", err)
		}
	}
}

// busy reports whether a node other than a forgotten one has handles of
// path open, or is being released. Call with fix held (no open or create
// runs then); a node of path whose mutex is taken counts as busy.
func (p *passthroughFS) busy(path string) bool {
	for _, e := range p.nodes.snapshot() {
		if at, ok := p.paths.path(e.id); !ok || at != path {
			continue
		}
		if !e.v.mu.TryLock() {
			return true
		}
		open := e.v.pt+e.v.cached > 0
		e.v.mu.Unlock()
		if open {
			return true
		}
	}
	return false
}

// rewrite writes every marked file whose change time moved through the
// VFS at path; wrote says whether any was.
func (p *passthroughFS) rewrite(path string, marks []*ptMark) (wrote bool, err error) {
	var changed []*ptMark
	for _, m := range marks {
		var st unix.Stat_t
		if err := unix.Fstat(int(m.f.Fd()), &st); err != nil {
			return false, err
		}
		if st.Ctim != m.ctime {
			changed = append(changed, m)
		}
	}
	if len(changed) == 0 {
		return false, nil
	}
	h, err := p.v.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return false, err
	}
	for _, m := range changed {
		if err := p.rewriteOne(path, h, m.f); err != nil {
			h.Close()
			return false, err
		}
	}
	return true, h.Close()
}

// rewriteOne writes f, a file a mapping may have written, through h (a
// handle of path): one byte of it while it is still path's cache file
// (rclone then uploads the file whole), else all of it.
func (p *passthroughFS) rewriteOne(path string, h vfs.Handle, f *os.File) error {
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return err // an empty file: nothing a mapping could write
	}
	var b [1]byte
	if _, err := f.ReadAt(b[:], 0); err != nil {
		return err
	}
	// rclone opens its cache item at the first write, and replaces the
	// file there if the object changed in the bucket.
	if _, err := h.WriteAt(b[:], 0); err != nil {
		return err
	}
	if now, err := os.Stat(p.cache.DataPath(path)); err == nil && os.SameFile(now, fi) {
		return nil
	}
	buf := make([]byte, 1<<20)
	for off := int64(0); off < fi.Size(); {
		n, err := f.ReadAt(buf, off)
		if n > 0 {
			if _, werr := h.WriteAt(buf[:n], off); werr != nil {
				return werr
			}
			off += int64(n)
		}
		if err == io.EOF {
			break
		} else if err != nil {
			return err
		}
	}
	if err := h.Truncate(fi.Size()); err != nil {
		return err
	}
	// The whole file is now the application's (Repair must not fetch the
	// bucket's bytes over it).
	return p.j.Wrote(path, cachejournal.Written{Tail: true})
}

func closeMarks(marks []*ptMark) {
	for _, m := range marks {
		m.f.Close()
	}
}
