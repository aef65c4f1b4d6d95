package fuseserver

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	rfs "github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/lib/ranges"
	"github.com/rclone/rclone/vfs"

	"github.com/bucket-csi/bucket-csi/pkg/cachejournal"
	"github.com/bucket-csi/bucket-csi/pkg/fuseproto"
)

// passthroughFS lets the kernel read the files of a read-only MOUNT_CACHED
// volume straight from rclone's cache files (FUSE passthrough, Linux 6.9
// and later): a file wholly in the cache and clean is read at the speed of
// the node's disk, without a round trip through this process per request.
// Why read-only volumes only, and the rclone and kernel rules this relies
// on, with source references: docs/benchmarks.md, "MOUNT_CACHED through
// FUSE passthrough".
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
//     mode conflict.
//   - rclone opens a file's cache item at the first read through a handle,
//     so a passthrough handle never opens it; the VFS runs without handle
//     caching (passthroughWanted), so rclone holds no descriptor of a file
//     it closed. Whenever rclone opens the item again it finds another
//     file or, when the object changed, replaces the file by a new one: the
//     file the kernel reads is never changed in place. Cache eviction
//     unlinks it; open readers keep reading it whole.
//   - fsync of a passthrough handle answers OK: the file is clean.
//   - One backing ID per node, registered at its first passthrough open and
//     unregistered at the last passthrough release. A failed registration
//     (no CAP_SYS_ADMIN, a cache directory on a stacked filesystem) turns
//     passthrough off for the server, logged once.
type passthroughFS struct {
	fuse.RawFileSystem
	v     *vfs.VFS
	paths *pathTable
	cache cachejournal.Layout
	log   *slog.Logger
	// opens counts the handles answered with plain passthrough.
	opens atomic.Int64

	// nodes: a node's entry is kept while a call uses it or it has handles
	// open.
	nodes nodeTable[ptNode]

	mu      sync.Mutex
	srv     *fuse.Server    // set by attach
	on      bool            // the kernel offers passthrough and registering works
	handles map[uint64]bool // open handle -> answered with passthrough
}

// ptNode is one kernel node's open handles. mu serialises the node's opens
// and releases; it is taken before passthroughFS.mu and the nodes table's
// lock, never after.
type ptNode struct {
	mu      sync.Mutex
	cached  int // open handles served through rclone
	pt      int // open handles answered with FOPEN_PASSTHROUGH
	backing *ptBacking
}

// ptBacking is the cache file registered with the kernel for a node.
type ptBacking struct {
	id          int32
	f           *os.File
	fi          os.FileInfo
	fingerprint string
}

// passthroughWanted reports whether cfg's server uses passthrough where
// the kernel offers it: with Passthrough, on a read-only volume served
// through the cache with durableFS (whose path table it reads).
func passthroughWanted(cfg *fuseproto.Config) bool {
	return cfg.Passthrough && cfg.Cache && cfg.Durable && cfg.ReadOnly
}

// newPassthroughFS wraps d (whose path table it reads); cache is the
// layout of v's cache (the write journal's, checked against v).
func newPassthroughFS(d *durableFS, v *vfs.VFS, cache cachejournal.Layout, log *slog.Logger) *passthroughFS {
	return &passthroughFS{RawFileSystem: d, v: v, paths: d.paths, cache: cache, log: log,
		handles: map[uint64]bool{}}
}

// attach starts passthrough on srv, once mounted, if the kernel offers
// it, and logs which way reads go.
func (p *passthroughFS) attach(srv *fuse.Server) {
	on := srv.KernelSettings().Flags64()&fuse.CAP_PASSTHROUGH != 0
	p.mu.Lock()
	p.srv, p.on = srv, on
	p.mu.Unlock()
	if on {
		p.log.Info("FUSE passthrough in use: reads of wholly cached files go to the cache file")
	} else {
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
	p.nodes.put(id, func(n *ptNode) bool { return n.pt == 0 && n.cached == 0 })
}

func (p *passthroughFS) Open(c <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	n := p.node(in.NodeId)
	n.mu.Lock()
	defer n.mu.Unlock()
	defer p.done(in.NodeId)
	st := p.RawFileSystem.Open(c, in, out)
	if !st.Ok() {
		return st
	}
	pt := p.decide(in, n, out)
	p.mu.Lock()
	p.handles[out.Fh] = pt
	p.mu.Unlock()
	return st
}

func (p *passthroughFS) Create(c <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	st := p.RawFileSystem.Create(c, in, name, out)
	if !st.Ok() {
		return st
	}
	n := p.node(out.NodeId)
	n.mu.Lock()
	defer n.mu.Unlock()
	defer p.done(out.NodeId)
	// A new file is never cached whole and clean; if the node is in
	// passthrough mode the kernel wants the backing.
	pt := n.pt > 0
	if pt {
		n.pt++
		out.BackingID = n.backing.id
		out.OpenFlags = out.OpenFlags&fuse.FOPEN_NOFLUSH | fuse.FOPEN_PASSTHROUGH | fuse.FOPEN_DIRECT_IO
	} else {
		n.cached++
	}
	p.mu.Lock()
	p.handles[out.Fh] = pt
	p.mu.Unlock()
	return st
}

// decide answers an open of a node whose mutex is held, and counts it.
func (p *passthroughFS) decide(in *fuse.OpenIn, n *ptNode, out *fuse.OpenOut) bool {
	if n.pt > 0 {
		n.pt++
		out.BackingID = n.backing.id
		flags := out.OpenFlags&(fuse.FOPEN_NOFLUSH|fuse.FOPEN_DIRECT_IO) | fuse.FOPEN_PASSTHROUGH
		if in.Flags&syscall.O_ACCMODE != syscall.O_RDONLY {
			flags |= fuse.FOPEN_DIRECT_IO
		} else if path, ok := p.paths.path(in.NodeId); !ok || !p.current(path, n.backing) {
			flags |= fuse.FOPEN_DIRECT_IO
		}
		if flags&fuse.FOPEN_DIRECT_IO == 0 {
			p.opens.Add(1)
		}
		out.OpenFlags = flags
		return true
	}
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
	delete(p.handles, in.Fh) // before the inner release frees the number
	p.mu.Unlock()
	p.RawFileSystem.Release(c, in)
	if !ok {
		return
	}
	n := p.node(in.NodeId)
	n.mu.Lock()
	defer n.mu.Unlock()
	defer p.done(in.NodeId)
	if !pt {
		n.cached--
		return
	}
	if n.pt--; n.pt == 0 && n.backing != nil {
		p.mu.Lock()
		srv := p.srv
		p.mu.Unlock()
		if errno := srv.UnregisterBackingFd(n.backing.id); errno != 0 {
			p.log.Warn("unregistering a passthrough backing file failed", "errno", errno.Error())
		}
		n.backing.f.Close()
		n.backing = nil
	}
}

// Fsync of a passthrough handle has nothing to do: its file is clean, in
// the bucket already (the durable upload below would rewrite it).
func (p *passthroughFS) Fsync(c <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	p.mu.Lock()
	pt := p.handles[in.Fh]
	p.mu.Unlock()
	if pt {
		return fuse.OK
	}
	return p.RawFileSystem.Fsync(c, in)
}

// candidate opens the cache file of node id if the file is wholly cached,
// clean and the VFS's current object; nil otherwise.
func (p *passthroughFS) candidate(id uint64) *ptBacking {
	path, ok := p.paths.path(id)
	if !ok {
		return nil
	}
	f, err := os.Open(p.cache.DataPath(path))
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
	node, err := p.v.Stat(path)
	if err != nil {
		return "", false
	}
	o, ok := node.DirEntry().(rfs.Object)
	if !ok || o == nil || rfs.Fingerprint(context.Background(), o, p.v.Opt.FastFingerprint) != info.Fingerprint {
		return "", false
	}
	return info.Fingerprint, true
}
