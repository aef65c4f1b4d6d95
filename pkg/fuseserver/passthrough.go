package fuseserver

import (
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/rclone/rclone/lib/ranges"
	"github.com/rclone/rclone/vfs"

	"github.com/bucket-csi/bucket-csi/pkg/cachejournal"
	"github.com/bucket-csi/bucket-csi/pkg/fuseproto"
	"github.com/bucket-csi/bucket-csi/pkg/plainfile"
)

// passthroughFS lets the kernel read the files of a MOUNT_CACHED volume
// straight from rclone's cache files (FUSE passthrough, Linux 6.9 and
// later): a file wholly in the cache and clean is read at the speed of the
// node's disk, without a round trip through this process per request. The
// rclone and kernel rules this relies on, with source references:
// docs/benchmarks.md, "MOUNT_CACHED through FUSE passthrough".
//
// Contract:
//   - An open is answered with passthrough only when it is read-only, the
//     node has no other handle open, rclone's metadata for the file says
//     it is clean and every byte is present, the cache file has that size,
//     the path still names that file after the metadata was read, and the
//     VFS's object has the fingerprint the cache recorded. Otherwise it is
//     served as before, through rclone.
//   - The kernel allows one I/O mode per inode and fails an open that
//     breaks the rule with EIO. So while a node has passthrough handles,
//     every open of it is answered with the same backing file: plain
//     passthrough while the checks above still hold, else passthrough
//     with FOPEN_DIRECT_IO, whose reads go through rclone. A node with
//     other handles open is never given passthrough. No open fails for a
//     mode conflict. Writes of a write-capable open go through rclone
//     (FOPEN_DIRECT_IO), which writes its cache file in place (readers
//     see the bytes while rclone has not dropped the file they were
//     given: cache eviction or reset can drop it under them).
//   - The one write the server cannot see: a read-write open answered
//     with passthrough can map the cache file shared and write it through
//     the mapping, even after its close. Such a node is marked (in the
//     write journal first, passthrough_mapped.go), and once the kernel has
//     forgotten it (no mapping remains) the file is written again through
//     rclone, which uploads it.
//   - rclone opens a file's cache item at the first read or write through
//     a handle, so a passthrough handle never opens it. The VFS runs
//     without handle caching (vfsOptions), so rclone holds no descriptor
//     of a file it closed: whenever rclone opens the item again it finds
//     another file or, when the object changed, replaces the file by a
//     new one. So on a read-only volume the file the kernel reads never
//     changes in place; on a read-write volume it does by writes made
//     through this server, and by a refill when the object changed
//     outside while rclone holds the file open for a handle.
//     Cache eviction unlinks it; open readers keep reading it whole.
//   - fsync goes to durableFS, which uploads a file with changes not yet
//     in the bucket (rclone's metadata says dirty). Bytes written through
//     a shared mapping (below) reach rclone only when the node is
//     settled: an fsync before that does not upload them.
//   - One backing ID per node, registered at its first passthrough open and
//     unregistered at the last passthrough release. A failed registration
//     (no CAP_SYS_ADMIN, a cache directory on a stacked filesystem) turns
//     passthrough off for the server, logged once.
type passthroughFS struct {
	fuse.RawFileSystem
	durable *durableFS // the inner file system
	v       *vfs.VFS
	paths   *pathTable
	j       *cachejournal.Journal
	cache   cachejournal.Layout
	hidden  *hiddenKeys // the keys of files written through passthrough
	// serverWrites: no new file becomes a passthrough writer.
	serverWrites bool
	// policy: whether a new file may become one, from the files before it.
	policy writerPolicy
	order  releaseOrder
	log    *slog.Logger
	// stopping is set once the server is unmounted: settles stop waiting.
	stopping atomic.Bool
	// opens counts the handles answered with plain passthrough; writes
	// the write-capable ones among them (passthrough_writer.go).
	opens  atomic.Int64
	writes atomic.Int64
	// wrote sums the sizes of the files written through passthrough, each
	// counted once its writer ended.
	wrote atomic.Int64
	// adopts counts the adopts begun (passthrough_shadow.go, Lookup).
	adopts atomic.Uint64

	// nodes: a node's entry is kept while a call uses it or it has handles
	// open.
	nodes nodeTable[ptNode]

	// fix is held by a settle while it writes a file through rclone, and
	// shared by opens, creates, truncates, renames and unlinks, so none
	// runs beside that write (passthrough_settle.go). Taken before a
	// node's mutex.
	fix      sync.RWMutex
	settling sync.WaitGroup // settles under way
	// conflicts counts the marked files saved beside their path.
	conflicts atomic.Int64

	mu      sync.Mutex
	srv     *fuse.Server    // set by attach
	on      bool            // the kernel offers passthrough and registering works
	handles map[uint64]bool // open handle -> answered with FOPEN_PASSTHROUGH
	// created: the open handles of creates served through rclone, whose
	// files' sizes the writer policy counts at their release.
	created map[uint64]bool
	pending []*ptSettle // settles not done (passthrough_settle.go)
}

// ptNode is one kernel node's open handles. mu serialises the node's opens
// and releases; it is taken before passthroughFS.mu and the nodes table's
// lock, never after.
type ptNode struct {
	mu      sync.Mutex
	cached  int // open handles served through rclone
	pt      int // open handles answered with FOPEN_PASSTHROUGH
	backing *ptBacking
	// mapped lists the cache files a read-write open was given (with
	// passthrough) since the node was last settled: shared mappings may
	// write them until the kernel forgets the node.
	mapped []*ptMark
	// writer is set while the node's file is written through passthrough
	// (passthrough_writer.go).
	writer *ptWriter
}

// ptBacking is the cache file registered with the kernel for a node.
type ptBacking struct {
	id          int32
	f           *os.File
	fi          os.FileInfo
	fingerprint string
	// shadow is, for a writer's node, rclone's own descriptor's file,
	// unlinked (passthrough_shadow.go); nil once the writer ended.
	shadow *os.File
}

// closeShadow closes b's shadow, if any.
func (b *ptBacking) closeShadow() {
	if b.shadow != nil {
		b.shadow.Close()
		b.shadow = nil
	}
}

// passthroughWanted reports whether cfg's server uses passthrough where
// the kernel offers it: with Passthrough, on a volume served through the
// cache with durableFS (whose path table it reads).
func passthroughWanted(cfg *fuseproto.Config) bool {
	return cfg.Passthrough && cfg.Cache && cfg.Durable
}

// newPassthroughFS wraps d (whose path table it reads); j is the write
// journal of v's cache (its layout checked against v); hidden are the
// keys v's listings leave out; serverWrites keeps new files from becoming
// passthrough writers (passthrough_writer.go).
func newPassthroughFS(d *durableFS, v *vfs.VFS, j *cachejournal.Journal, hidden *hiddenKeys, serverWrites bool, log *slog.Logger) *passthroughFS {
	return &passthroughFS{RawFileSystem: d, durable: d, v: v, paths: d.paths, j: j, cache: j.Layout(), hidden: hidden, serverWrites: serverWrites, log: log,
		handles: map[uint64]bool{}, created: map[uint64]bool{}, order: releaseOrder{off: v.Opt.WriteBack <= 0}}
}

// attach starts passthrough on srv, once mounted, if the kernel offers
// it, and logs which way reads and writes go.
func (p *passthroughFS) attach(srv *fuse.Server) {
	on := srv.KernelSettings().Flags64()&fuse.CAP_PASSTHROUGH != 0
	p.mu.Lock()
	p.srv, p.on = srv, on
	p.mu.Unlock()
	switch {
	case on && !p.serverWrites:
		p.log.Info("FUSE passthrough in use: reads of wholly cached files, and writes of new files created write-only, go to the cache file")
	case on:
		p.log.Info("FUSE passthrough in use: reads of wholly cached files go to the cache file; new files are written through the server")
	default:
		p.log.Info("FUSE passthrough unavailable (the kernel does not offer it): reads go through the server")
	}
}

// active reports whether passthrough is in use.
func (p *passthroughFS) active() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.on
}

// node returns id's entry, creating it; done must follow.
func (p *passthroughFS) node(id uint64) *ptNode { return p.nodes.get(id) }

// done ends a use of id's entry begun by node; its mu is held.
func (p *passthroughFS) done(id uint64) {
	p.nodes.put(id, func(n *ptNode) bool { return n.pt == 0 && n.cached == 0 && n.mapped == nil && n.writer == nil })
}

func (p *passthroughFS) Open(c <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	p.fix.RLock() // rclone may open (and truncate) the file in the inner open
	defer p.fix.RUnlock()
	n := p.node(in.NodeId)
	n.mu.Lock()
	defer n.mu.Unlock()
	defer p.done(in.NodeId)
	if n.writer != nil {
		return p.joinWriter(c, in, n, out)
	}
	st := p.RawFileSystem.Open(c, in, out)
	if !st.Ok() {
		return st
	}
	pt, ok := p.decide(in, n, out)
	if !ok {
		p.RawFileSystem.Release(c, &fuse.ReleaseIn{InHeader: in.InHeader, Fh: out.Fh, Flags: in.Flags})
		return fuse.EIO
	}
	p.mu.Lock()
	p.handles[out.Fh] = pt
	p.mu.Unlock()
	return st
}

func (p *passthroughFS) Create(c <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	p.fix.RLock()
	defer p.fix.RUnlock()
	st := p.RawFileSystem.Create(c, in, name, out)
	if !st.Ok() {
		return st
	}
	n := p.node(out.NodeId)
	n.mu.Lock()
	defer n.mu.Unlock()
	defer p.done(out.NodeId)
	// A new file is never cached whole and clean; if the node is in
	// passthrough mode the kernel wants the backing. A write-only create
	// of a new file may get a passthrough writer. A create never finds a
	// node with a writer (the kernel holds its entry); if one did, the
	// inner create has opened rclone's item beside the writer: refused.
	var pt, ok bool
	switch {
	case n.writer != nil:
		p.log.Error("a create found a file written through passthrough; refused", "node", out.NodeId)
	case n.pt > 0:
		pt, ok = true, p.joinPassthrough(out.NodeId, in.Flags, n, &out.OpenOut, true)
	case p.grantWriter(in, n, out):
		pt, ok = true, true
	default:
		n.cached++
		ok = true
	}
	if !ok {
		// The kernel takes neither the handle nor the entry.
		h := in.InHeader
		h.NodeId = out.NodeId
		p.RawFileSystem.Release(c, &fuse.ReleaseIn{InHeader: h, Fh: out.Fh, Flags: in.Flags})
		p.RawFileSystem.Forget(out.NodeId, 1)
		return fuse.EIO
	}
	p.mu.Lock()
	p.handles[out.Fh] = pt
	if !pt {
		p.created[out.Fh] = true
	}
	p.mu.Unlock()
	return st
}

// SetAttr of a size truncates through rclone: not beside a settle's write.
// No SetAttr runs beside the adopt of a passthrough writer's file (a time
// set then would be replaced by the adopt's). A size set on a writer's
// node truncates rclone's shadow through rclone, then the written file
// here (passthrough_shadow.go).
func (p *passthroughFS) SetAttr(c <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	if in.Valid&fuse.FATTR_SIZE != 0 {
		p.fix.RLock()
		defer p.fix.RUnlock()
	}
	held, release := p.lockWriters([]uint64{in.NodeId})
	defer release()
	st := p.RawFileSystem.SetAttr(c, in, out)
	if st.Ok() && in.Valid&fuse.FATTR_SIZE != 0 && len(held) == 1 {
		if err := held[0].n.backing.f.Truncate(int64(in.Size)); err != nil {
			return fuse.ToStatus(err) // the shadow follows at the next sync
		}
	}
	return st
}

// joinPassthrough answers an open of node id, whose mutex is held and
// which has passthrough handles, with the same backing file: plain
// passthrough for a read-only open unless stale (then, as for every
// write-capable open, with FOPEN_DIRECT_IO, so reads and writes go through
// rclone). A read-write open is first recorded as mapped; false when that
// fails (the open must then fail: a mapping's writes could be lost).
func (p *passthroughFS) joinPassthrough(id uint64, flags uint32, n *ptNode, out *fuse.OpenOut, stale bool) bool {
	if flags&syscall.O_ACCMODE == syscall.O_RDWR && !p.markMapped(id, n) {
		return false
	}
	n.pt++
	out.BackingID = n.backing.id
	open := out.OpenFlags&(fuse.FOPEN_NOFLUSH|fuse.FOPEN_DIRECT_IO) | fuse.FOPEN_PASSTHROUGH
	if stale || flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		open |= fuse.FOPEN_DIRECT_IO
	}
	if open&fuse.FOPEN_DIRECT_IO == 0 {
		p.opens.Add(1)
	}
	out.OpenFlags = open
	return true
}

// decide answers an open of a node whose mutex is held, and counts it:
// whether it is passthrough, and false in ok when the open must fail.
func (p *passthroughFS) decide(in *fuse.OpenIn, n *ptNode, out *fuse.OpenOut) (pt, ok bool) {
	if n.pt > 0 {
		stale := false
		if in.Flags&syscall.O_ACCMODE == syscall.O_RDONLY {
			path, known := p.paths.path(in.NodeId)
			stale = !known || !p.current(path, n.backing)
		}
		return true, p.joinPassthrough(in.NodeId, in.Flags, n, out, stale)
	}
	return p.first(in, n, out), true
}

// first answers an open of a node without passthrough handles: with
// passthrough when it is read-only and the node's file is wholly cached,
// clean and current.
func (p *passthroughFS) first(in *fuse.OpenIn, n *ptNode, out *fuse.OpenOut) bool {
	if n.cached > 0 || in.Flags&(syscall.O_ACCMODE|syscall.O_TRUNC|syscall.O_APPEND) != syscall.O_RDONLY || out.OpenFlags&fuse.FOPEN_DIRECT_IO != 0 {
		n.cached++
		return false
	}
	b := p.candidate(in.NodeId)
	if b == nil {
		n.cached++
		return false
	}
	id, ok := p.register(b.f)
	if !ok {
		b.f.Close()
		n.cached++
		return false
	}
	b.id = id
	n.backing, n.pt = b, 1
	p.opens.Add(1)
	out.BackingID = id
	out.OpenFlags = out.OpenFlags&fuse.FOPEN_NOFLUSH | fuse.FOPEN_PASSTHROUGH
	return true
}

// register hands f to the kernel; a failure turns passthrough off.
func (p *passthroughFS) register(f *os.File) (int32, bool) {
	p.mu.Lock()
	srv, on := p.srv, p.on
	p.mu.Unlock()
	if !on {
		return 0, false
	}
	id, errno := srv.RegisterBackingFd(&fuse.BackingMap{Fd: int32(f.Fd())})
	if errno != 0 {
		p.mu.Lock()
		was := p.on
		p.on = false
		p.mu.Unlock()
		if was {
			p.log.Warn("FUSE passthrough turned off: the kernel refused a backing file; reads go through the server", "errno", errno.Error())
		}
		return 0, false
	}
	return id, true
}

func (p *passthroughFS) Release(c <-chan struct{}, in *fuse.ReleaseIn) {
	p.mu.Lock()
	pt, ok := p.handles[in.Fh]
	created := p.created[in.Fh]
	delete(p.handles, in.Fh) // before the inner release frees the number
	delete(p.created, in.Fh)
	p.mu.Unlock()
	if ok && pt && p.releaseWriter(c, in) {
		return
	}
	if in.Flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		// rclone queues the file's upload: in turn (releaseOrder).
		t := p.order.take()
		if created {
			p.countCreated(in.NodeId)
		}
		p.order.wait(t)
		p.RawFileSystem.Release(c, in)
		p.order.done(t)
	} else {
		p.RawFileSystem.Release(c, in)
	}
	if !ok {
		return
	}
	n := p.node(in.NodeId)
	n.mu.Lock()
	defer n.mu.Unlock()
	defer p.done(in.NodeId)
	if !pt {
		n.cached--
	} else {
		n.pt--
	}
	p.refreshNode(in.NodeId, n)
	if n.pt == 0 && n.cached == 0 && n.mapped != nil {
		p.forgetSoon(in.NodeId)
	}
	if n.pt == 0 {
		p.unregister(n)
	}
}

// countCreated counts in the writer policy the file of node id, whose
// create was served through rclone and whose handle is being released:
// with no lock held, before the inner release, which queues the file's
// upload (with write-back off, uploads it), and while rclone holds the
// file open, so its cache file is the one written.
func (p *passthroughFS) countCreated(id uint64) {
	if p.serverWrites {
		return
	}
	if path, ok := p.paths.attachedPath(id); ok {
		if fi, err := os.Stat(p.cache.DataPath(path)); err == nil {
			p.policy.wrote(fi.Size())
		}
	}
}

// unregister ends node n's backing file (mutex held, no passthrough handle
// open), if it has one.
func (p *passthroughFS) unregister(n *ptNode) {
	if n.backing == nil {
		return
	}
	p.unregisterID(n.backing.id)
	n.backing.f.Close()
	n.backing.closeShadow()
	n.backing = nil
}

// unregisterID ends backing id with the kernel.
func (p *passthroughFS) unregisterID(id int32) {
	p.mu.Lock()
	srv := p.srv
	p.mu.Unlock()
	if errno := srv.UnregisterBackingFd(id); errno != 0 {
		p.log.Warn("unregistering a passthrough backing file failed", "errno", errno.Error())
	}
}

// candidate opens the cache file of node id if the file is wholly cached,
// clean and the VFS's current object; nil otherwise.
func (p *passthroughFS) candidate(id uint64) *ptBacking {
	path, ok := p.paths.path(id)
	if !ok {
		return nil
	}
	f, err := plainfile.Open(p.cache.DataPath(path), os.O_RDONLY, 0) // at every open of the node
	if err != nil {
		return nil
	}
	fi, err := f.Stat()
	if err == nil {
		b := &ptBacking{f: f, fi: fi}
		if b.fingerprint, ok = p.check(path, fi); ok {
			return b
		}
	}
	f.Close()
	return nil
}

// current reports whether b is still what an open of path would read.
func (p *passthroughFS) current(path string, b *ptBacking) bool {
	fp, ok := p.check(path, b.fi)
	return ok && fp == b.fingerprint
}

// check reports whether the cache file fi is path's whole, clean content
// and the VFS's current object, and returns the cached fingerprint.
func (p *passthroughFS) check(path string, fi os.FileInfo) (string, bool) {
	info, err := p.cache.Info(path)
	if err != nil || info.Dirty || info.Size <= 0 || info.Fingerprint == "" ||
		!info.Rs.Present(ranges.Range{Pos: 0, Size: info.Size}) {
		return "", false
	}
	// The path still names the file (read after the metadata: rclone
	// removes both and creates a new file when it drops a cached copy).
	now, err := os.Stat(p.cache.DataPath(path))
	if err != nil || !os.SameFile(fi, now) || now.Size() != info.Size {
		return "", false
	}
	if !p.objectIs(path, info.Fingerprint) {
		return "", false
	}
	return info.Fingerprint, true
}
