package fuseserver

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	rfs "github.com/rclone/rclone/fs"
)

// Passthrough writers: a new file created write-only is handed to the
// kernel with FUSE passthrough on a file at its cache file's path, so its
// writes go to the node's disk without a round trip through this server
// per request. rclone learns which bytes of a cache file are the
// application's only from writes made through it; bytes it does not list
// are fetched from the bucket over the file as soon as its cache item has
// an object (at the item's last close, or at a read through rclone). So
// the rules (docs/benchmarks.md, "Passthrough writers"):
//
//   - Granted only at a create whose access mode is O_WRONLY, with
//     O_TRUNC or O_EXCL, of a name the VFS holds no object for, whose
//     cache item is dirty and never uploaded: the create's own rclone
//     handle opened the item with no object, and nothing else opens it
//     while the writer lives, so the item has no object to fetch from.
//     Never with serverWrites (Config.ServerWrites, the small-files
//     profile): a writer costs a new file about half a millisecond, which
//     a small file does not earn back (docs/benchmarks.md, "Small files
//     written"); nor, with the defaults, while the files written last on
//     the volume were all small (writerPolicy, passthrough_policy.go).
//   - While the writer lives (from the create until the last
//     write-capable handle of the node is released, or, once an O_RDWR
//     handle was opened, until the kernel's last forget of the node, when
//     no shared mapping remains), every open of the node is plain
//     passthrough on the same file, its rclone handle opened read-only
//     (so no truncate reaches it and it never opens the item): reads and
//     writes of every handle go to the written file. The creator's rclone
//     handle is held open (its release deferred), so rclone neither
//     evicts nor uploads the file meanwhile. The written file is the
//     server's own, put at the cache file's path at the create, and
//     rclone's descriptor is on its shadow, whose size and times the
//     server keeps the written file's (passthrough_shadow.go).
//   - While the writer lives, the VFS's listings leave the file's key out
//     (hiddenKeys): an object there (the fsync's put, or one written
//     outside) would end the file's virtual entry, give the VFS file the
//     object and let a later lookup make a second node for the path, whose
//     opens would go through rclone.
//   - fsync, through any handle, syncs the cache file and puts it in the
//     bucket from this server's own descriptor, never through rclone; a
//     truncate skips wholeFS's fetch (which would read through rclone).
//   - When the writer ends (no write-capable handle, no mapping), one
//     byte written through rclone into the shadow makes rclone list every
//     byte of the written file, which is given its time back (adopt,
//     passthrough_shadow.go; nothing of the file is copied), and only
//     then, in its turn (releaseOrder: files are queued for upload in the
//     order they were closed), is the creator's handle released, so its
//     close uploads the whole file and later opens find it as if written
//     through the server. Attribute changes, unlinks and renames of the
//     file wait while an adopt runs (holdWriters). A directory holding a
//     writer that an fsync put in the bucket is not renamed (EXDEV): the
//     move lists the objects to move, and the listing hides that one. An
//     adopt that fails keeps the writer (tried again every pokeInterval
//     and when the server stops; a forget is held back meanwhile, so the
//     node stays known); a file a server leaves unadopted is uploaded
//     whole by the next one (the create's journal note, recorded at the
//     first close or fsync, makes Repair list every byte).
//   - The kernel's release comes after close(2) returned, so the adopt
//     does not delay the application's close.

// ptWriter is the writer state of a node (see the top of this file).
type ptWriter struct {
	held fuse.ReleaseIn  // the creator's handle, released when the writer ends
	fhs  map[uint64]bool // write-capable handles open
	rw   bool            // an O_RDWR handle was opened: wait for the FORGET
	// forgets counts the kernel's forgets of the node held back while an
	// adopt fails (the inner file system must know the node until the
	// creator's handle is released).
	forgets uint64
}

// grantWriter answers the create of node id (mutex held, no handle open)
// with a passthrough writer when the rules above allow it.
func (p *passthroughFS) grantWriter(in *fuse.CreateIn, n *ptNode, out *fuse.CreateOut) bool {
	// With O_TRUNC or O_EXCL rclone's create opens the item at once
	// (truncating it); without, only if the VFS did not know the name.
	if p.serverWrites || in.Flags&syscall.O_ACCMODE != syscall.O_WRONLY || in.Flags&(syscall.O_TRUNC|syscall.O_EXCL) == 0 ||
		n.cached > 0 || n.pt > 0 || n.mapped != nil || out.OpenFlags&fuse.FOPEN_DIRECT_IO != 0 || !p.active() {
		return false
	}
	if !p.policy.admits() {
		// Before the checks below, which cost a declined small file more
		// than a tenth of a millisecond: counted even when they would
		// have refused it too.
		p.policy.declined.Add(1)
		return false
	}
	path, ok := p.paths.attachedPath(out.NodeId)
	if !ok {
		return false
	}
	// Hidden first: a listing that ends after this shows no object there,
	// and one that ended before shows in the VFS's object, checked next.
	p.hidden.add(out.NodeId)
	if !p.writable(path) {
		p.hidden.remove(out.NodeId)
		return false
	}
	f, shadow, err := p.writerFiles(path)
	if err != nil {
		p.log.Debug("no passthrough writer: its files could not be made", "path", path, "err", err)
		p.hidden.remove(out.NodeId)
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		dropWriterFiles(f, shadow)
		p.hidden.remove(out.NodeId)
		return false
	}
	id, ok := p.register(f)
	if !ok {
		dropWriterFiles(f, shadow)
		p.hidden.remove(out.NodeId)
		return false
	}
	// Last, nothing after it can fail: until this rename rclone's data
	// file is the one at the path (the create then goes through rclone).
	if err := p.placeWriter(path, f, shadow); err != nil {
		p.log.Debug("no passthrough writer: its file could not be put in place", "path", path, "err", err)
		p.unregisterID(id)
		dropWriterFiles(f, shadow)
		p.hidden.remove(out.NodeId)
		return false
	}
	h := in.InHeader
	h.NodeId = out.NodeId
	n.backing = &ptBacking{id: id, f: f, fi: fi, shadow: shadow}
	n.pt = 1
	n.writer = &ptWriter{held: fuse.ReleaseIn{InHeader: h, Fh: out.Fh, Flags: in.Flags}, fhs: map[uint64]bool{out.Fh: true}}
	p.writes.Add(1)
	out.BackingID = id
	out.OpenFlags = out.OpenFlags&fuse.FOPEN_NOFLUSH | fuse.FOPEN_PASSTHROUGH
	return true
}

// writable reports whether path may get a writer: the VFS holds no
// object for it and its cache item is dirty and never uploaded.
func (p *passthroughFS) writable(path string) bool {
	node, err := p.v.Stat(path)
	if err != nil {
		return false
	}
	if o, isObj := node.DirEntry().(rfs.Object); isObj && o != nil {
		return false // rclone's item may hold it: its close would fetch from it
	}
	info, err := p.cache.Info(path)
	return err == nil && info.Dirty && info.Fingerprint == ""
}

// joinWriter answers an open of a node whose writer lives (mutex held):
// plain passthrough, the inner open read-only.
func (p *passthroughFS) joinWriter(c <-chan struct{}, in *fuse.OpenIn, n *ptNode, out *fuse.OpenOut) fuse.Status {
	inner := *in
	inner.Flags = in.Flags&^(syscall.O_ACCMODE|syscall.O_TRUNC|syscall.O_APPEND|syscall.O_CREAT|syscall.O_EXCL) | syscall.O_RDONLY
	st := p.RawFileSystem.Open(c, &inner, out)
	if !st.Ok() {
		return st
	}
	n.pt++
	switch in.Flags & syscall.O_ACCMODE {
	case syscall.O_RDONLY:
		p.opens.Add(1)
	case syscall.O_RDWR:
		n.writer.rw = true
		fallthrough
	default:
		n.writer.fhs[out.Fh] = true
		p.writes.Add(1)
	}
	out.BackingID = n.backing.id
	out.OpenFlags = out.OpenFlags&fuse.FOPEN_NOFLUSH | fuse.FOPEN_PASSTHROUGH
	p.mu.Lock()
	p.handles[out.Fh] = true
	p.mu.Unlock()
	return st
}

// releaseWriter handles the release of a passthrough handle of a node
// whose writer lives; false when the node has none (the caller releases
// as usual).
func (p *passthroughFS) releaseWriter(c <-chan struct{}, in *fuse.ReleaseIn) bool {
	n := p.nodes.getIf(in.NodeId)
	if n == nil {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	defer p.done(in.NodeId)
	w := n.writer
	if w == nil {
		return false
	}
	if in.Fh == w.held.Fh {
		w.held = *in // released when the writer ends
	} else {
		p.RawFileSystem.Release(c, in)
	}
	delete(w.fhs, in.Fh)
	n.pt--
	switch {
	case len(w.fhs) > 0:
	case !w.rw:
		p.endAndForget(in.NodeId, n)
	case n.pt == 0 && n.cached == 0:
		p.forgetSoon(in.NodeId)
	}
	return true
}

// endAndForget ends node id's writer (mutex held) and passes on the
// forgets held back while it could not end.
func (p *passthroughFS) endAndForget(id uint64, n *ptNode) {
	forgets := n.writer.forgets
	if p.endWriting(id, n) && forgets > 0 {
		p.RawFileSystem.Forget(id, forgets)
	}
}

// endWriting ends node id's writer (mutex held; no write-capable handle
// and no mapping left): the file adopted by rclone, then, in its turn
// among the releases that queue uploads (releaseOrder), the creator's
// handle released, and the file's key shown again. False, with the writer
// kept, when the adopt failed.
func (p *passthroughFS) endWriting(id uint64, n *ptNode) bool {
	w := n.writer
	t := p.order.take()
	defer p.order.done(t)
	if path, attached := p.paths.attachedPath(id); attached {
		size, err := p.adopt(path, n.backing)
		if err != nil {
			p.log.Error("a file written through passthrough could not be handed to the cache; kept open, tried again", "path", path, "err", err)
			return false
		}
		p.policy.wrote(size) // before the stats show the bytes: who sees them sees it counted
		p.wrote.Add(size)
	} // else deleted or replaced: nothing of it is uploaded
	n.backing.closeShadow()
	p.order.wait(t)
	p.RawFileSystem.Release(nil, &w.held)
	p.hidden.remove(id)
	n.writer = nil
	if n.pt == 0 {
		p.unregister(n)
	}
	return true
}

// holdWriters locks, in order, the mutexes of those of the nodes ids that
// have a writer, so that no adopt runs until the returned func unlocks
// them (a truncate, unlink or rename through rclone beside the adopt
// would have rclone save the old file's metadata over a new one's, or
// list bytes of a file no longer there), and syncs their shadows
// (passthrough_shadow.go), since rclone's answer may carry their sizes.
func (p *passthroughFS) holdWriters(ids ...uint64) func() {
	_, release := p.lockWriters(ids)
	return release
}

// heldWriter is a node with a writer whose mutex lockWriters holds.
type heldWriter struct {
	id uint64
	n  *ptNode
}

// lockWriters is holdWriters, also returning the nodes held.
func (p *passthroughFS) lockWriters(ids []uint64) ([]heldWriter, func()) {
	slices.Sort(ids)
	var held []heldWriter
	for i, id := range ids {
		if id == 0 || i > 0 && ids[i-1] == id {
			continue
		}
		n := p.nodes.getIf(id)
		if n == nil {
			continue
		}
		n.mu.Lock()
		if n.writer == nil {
			p.done(id)
			n.mu.Unlock()
			continue
		}
		if err := n.backing.syncShadow(); err != nil {
			p.log.Warn("rclone may report an old size or time of a file written through passthrough", "node", id, "err", err)
		}
		held = append(held, heldWriter{id, n})
	}
	return held, func() {
		for _, h := range held {
			p.done(h.id)
			h.n.mu.Unlock()
		}
	}
}

// releaseOrder has the releases that queue uploads (a write-capable
// handle's through rclone, the end of a passthrough writer) reach rclone
// in the order they began, so that files are queued for upload in the
// order they were closed even when a writer's adopt takes a while. Each
// ticket taken must be done once.
type releaseOrder struct {
	// off: rclone uploads inside the release (no write-back delay), so
	// keeping turns would have each release wait for earlier uploads.
	off           bool
	mu            sync.Mutex
	cond          sync.Cond
	next, serving uint64
}

// take hands out the next ticket.
func (o *releaseOrder) take() uint64 {
	if o.off {
		return 0
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	t := o.next
	o.next++
	return t
}

// wait returns once every earlier ticket is done.
func (o *releaseOrder) wait(t uint64) {
	if o.off {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.awaitTurn(t)
}

// done ends ticket t, after or instead of its wait (without one it waits
// for its turn first, so turns stay in order).
func (o *releaseOrder) done(t uint64) {
	if o.off {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.awaitTurn(t)
	o.serving++
	o.cond.Broadcast()
}

// awaitTurn returns, o.mu held, once t is the ticket served.
func (o *releaseOrder) awaitTurn(t uint64) {
	if o.cond.L == nil {
		o.cond.L = &o.mu
	}
	for o.serving != t {
		o.cond.Wait()
	}
}

// retryWriter ends node id's writer if an adopt failed before, then
// passes on the forgets held back meanwhile.
func (p *passthroughFS) retryWriter(id uint64) {
	n := p.nodes.getIf(id)
	if n == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	defer p.done(id)
	w := n.writer
	if w == nil || len(w.fhs) > 0 {
		return
	}
	// A writer that had an O_RDWR handle ends only once the kernel forgot
	// the node and has not looked it up again (a new mapping could come).
	if w.rw && (w.forgets == 0 || n.pt > 0 || n.cached > 0 || p.paths.lookups(id) > w.forgets) {
		return
	}
	p.endAndForget(id, n)
}

// adopt makes rclone list every byte of path's written file (b, its
// writer ended) as the application's, without copying it
// (passthrough_shadow.go), gives rclone the file's time back, and returns
// its size.
func (p *passthroughFS) adopt(path string, b *ptBacking) (int64, error) {
	if b.shadow == nil {
		return 0, fmt.Errorf("%s: a passthrough writer without rclone's shadow file", path)
	}
	h, err := p.v.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	if now, err := os.Stat(p.cache.DataPath(path)); err != nil || !os.SameFile(now, b.fi) {
		h.Close()
		return 0, errors.Join(fmt.Errorf("%s's cache file is no longer the one written", path), err)
	}
	p.adopts.Add(1) // before the shadow is emptied (Lookup)
	size, mtime, err := b.markWritten(h)
	if err != nil {
		h.Close()
		return 0, err
	}
	// The byte's write made rclone take now as the file's time; the
	// writers' (or the one they set) is the written file's.
	if node, err := p.v.Stat(path); err == nil {
		if err := node.SetModTime(mtime); err != nil {
			p.log.Warn("the time of a file written through passthrough not kept", "path", path, "err", err)
		}
	}
	return size, h.Close()
}

// writerFile returns a descriptor of node id's cache file and its path
// while the node has a writer.
func (p *passthroughFS) writerFile(id uint64) (f *os.File, path string, ok bool) {
	n := p.nodes.getIf(id)
	if n == nil {
		return nil, "", false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	defer p.done(id)
	if n.writer == nil {
		return nil, "", false
	}
	path, attached := p.paths.attachedPath(id)
	if !attached {
		return nil, "", true
	}
	fd, err := syscall.Dup(int(n.backing.f.Fd()))
	if err != nil {
		return nil, path, true
	}
	return os.NewFile(uintptr(fd), n.backing.f.Name()), path, true
}

// Fsync of a node with a writer syncs the cache file and puts it in the
// bucket from this server's descriptor (rclone must not read it: its read
// would fetch the bytes it does not list); other nodes go to durableFS.
func (p *passthroughFS) Fsync(c <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	f, path, ok := p.writerFile(in.NodeId)
	if !ok {
		return p.RawFileSystem.Fsync(c, in)
	}
	if st := p.durable.RawFileSystem.Fsync(c, in); !st.Ok() {
		if f != nil {
			f.Close()
		}
		return st
	}
	if path == "" {
		return fuse.OK // deleted: nothing to make durable
	}
	if f == nil {
		p.log.Warn("fsync of a passthrough writer: the cache file could not be opened", "path", path)
		return fuse.EIO
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		p.log.Warn("fsync of a passthrough writer: syncing the cache file failed", "path", path, "err", err)
		return fuse.EIO
	}
	fi, err := f.Stat()
	if err == nil {
		err = p.durable.put(path, f, fi.Size(), fi.ModTime())
	}
	if err != nil {
		p.log.Warn("fsync upload failed", "path", path, "err", err)
		return fuse.EIO
	}
	p.hidden.put(in.NodeId)
	return fuse.OK
}
