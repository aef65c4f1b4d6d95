package fuseserver

import (
	"context"
	"errors"
	"io"
	"os"
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
//     and the fingerprint of the object it held (ptMark).
//  3. Whenever the node is left with no handle open, the kernel is asked
//     to drop its entry (and again every pokeInterval while it is marked),
//     so the FORGET follows the last mapping's end.
//  4. At the FORGET (settle), each marked file is written again through
//     the VFS, so rclone holds the path dirty and uploads it whole: one
//     byte read from it and written back while it is still the path's
//     cache file; all of it where rclone dropped that file since (cache
//     eviction or reset, which passthrough handles do not prevent) and
//     the path's cache holds nothing newer (clean, the same object). Then
//     the journal's mark is cleared. Where the path holds something newer
//     (the object changed outside, or another write went through rclone)
//     the two cannot be merged: the conflict is logged and the mark kept.
//     A settle waits while the path has another node with handles open or
//     marks, and runs with opens, creates and truncates held off, so its
//     writes never race an application's.
//  5. When the server stops, every node still marked is settled the same
//     way, its journal mark kept for the next server (a lazily unmounted
//     mapping may still write).
//
// Limits (docs/benchmarks.md, "Read-write volumes"): an fsync before the
// settle does not upload what a mapping wrote; a mapping that outlives its
// server writes a file the next server uploads only as Repair found it.
// A settle uploads the file even if no mapping wrote it: a cost paid only
// for read-write opens made while passthrough readers held the file.

// ptMark is a cache file a read-write passthrough open was given.
type ptMark struct {
	src         *ptBacking // the node's backing it was taken from
	f           *os.File   // a descriptor of its own, kept until settled
	fingerprint string     // of the object the cache file held
}

// pokeInterval is how often the kernel is asked again to drop the entry
// of a marked node with no handle open (a lookup since the last request
// may have cached it anew).
const pokeInterval = 10 * time.Second

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
	if err := p.j.Mapped(path); err != nil {
		f.Close()
		p.log.Error("read-write open refused: the write journal could not record a shared mapping", "path", path, "err", err)
		return false
	}
	n.mapped = append(n.mapped, &ptMark{src: n.backing, f: f, fingerprint: n.backing.fingerprint})
	return true
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

// poke asks again, every pokeInterval until ctx ends, for the entries of
// marked nodes with no handle open to be dropped.
func (p *passthroughFS) poke(ctx context.Context) {
	every(ctx, pokeInterval, func() {
		for _, e := range p.nodes.snapshot() {
			e.v.mu.Lock()
			idle := e.v.mapped != nil && e.v.pt == 0 && e.v.cached == 0
			e.v.mu.Unlock()
			if idle {
				p.forgetSoon(e.id)
			}
		}
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
	p.settling.Add(1)
	go func() {
		defer p.settling.Done()
		p.settle(path, marks, true)
	}()
}

// finish settles, once the server is unmounted and before the VFS drains
// its uploads, every node still marked; the journal marks stay.
func (p *passthroughFS) finish() {
	p.stopping.Store(true) // settles under way stop waiting for others
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
// of path). With final (a FORGET), it first waits while another node of
// path has handles or marks, and clears the journal's mark once rclone
// holds the file dirty. Once the server stops (finish), nothing waits and
// the mark stays for the next server.
func (p *passthroughFS) settle(path string, marks []*ptMark, final bool) {
	defer closeMarks(marks)
	p.fix.Lock()
	for final && !p.stopping.Load() && p.busy(path) {
		p.fix.Unlock()
		time.Sleep(200 * time.Millisecond)
		p.fix.Lock()
	}
	defer p.fix.Unlock()
	if err := p.rewrite(path, marks); err != nil {
		p.log.Error("a file a shared mapping may have written was not marked for upload: the write journal keeps it marked", "path", path, "err", err)
		return
	}
	p.log.Info("a file a shared mapping may have written is marked for upload", "path", path)
	if final && !p.stopping.Load() {
		if err := p.j.Settled(path); err != nil {
			p.log.Warn("the write journal keeps a settled mapping: the next server uploads the file once more", "path", path, "err", err)
		}
	}
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

// errConflict: a marked file and a newer content at its path.
var errConflict = errors.New("the file a shared mapping wrote is no longer the cache file and the path holds newer content (the object changed, or a write through the server): not merged")

// rewrite writes each mark through the VFS at path, so rclone holds the
// file dirty and uploads it whole: one byte of it while it is the path's
// cache file, else all of it where the cache holds nothing newer.
func (p *passthroughFS) rewrite(path string, marks []*ptMark) error {
	h, err := p.v.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	for _, m := range marks {
		if err := p.rewriteOne(path, h, m); err != nil {
			h.Close()
			return err
		}
	}
	return h.Close()
}

// rewriteOne writes mark m through h, a handle of path.
func (p *passthroughFS) rewriteOne(path string, h vfs.Handle, m *ptMark) error {
	fi, err := m.f.Stat()
	if err != nil {
		return err
	}
	if now, err := os.Stat(p.cache.DataPath(path)); err == nil && os.SameFile(now, fi) {
		if fi.Size() == 0 {
			return nil // nothing a mapping could write
		}
		var b [1]byte
		if _, err := m.f.ReadAt(b[:], 0); err != nil {
			return err
		}
		// rclone opens its item at the first write; it keeps this file
		// unless the object changed outside since.
		if _, err := h.WriteAt(b[:], 0); err != nil {
			return err
		}
		if now, err := os.Stat(p.cache.DataPath(path)); err != nil || !os.SameFile(now, fi) {
			return errConflict
		}
		return nil
	}
	// rclone dropped the file the mapping wrote. Its bytes are the path's
	// only if the cache holds nothing newer: no dirty copy, the same
	// object as when the file was marked.
	info, err := p.cache.Info(path)
	if err == nil && (info.Dirty || info.Fingerprint != m.fingerprint) {
		return errConflict
	}
	node, err := p.v.Stat(path)
	if err != nil {
		return err
	}
	if o, ok := node.DirEntry().(rfs.Object); !ok || o == nil || rfs.Fingerprint(context.Background(), o, p.v.Opt.FastFingerprint) != m.fingerprint {
		return errConflict
	}
	buf := make([]byte, 1<<20)
	for off := int64(0); off < fi.Size(); {
		n, err := m.f.ReadAt(buf, off)
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
	// The whole file is now the application's: Repair must not fetch the
	// bucket's bytes over it.
	return p.j.Wrote(path, cachejournal.Written{Tail: true})
}

// closeMarks closes the marks' descriptors.
func closeMarks(marks []*ptMark) {
	for _, m := range marks {
		m.f.Close()
	}
}
