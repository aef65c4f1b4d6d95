package fuseserver

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path"
	"sync"

	"github.com/hanwen/go-fuse/v2/fuse"
	rfs "github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/object"
	"github.com/rclone/rclone/vfs"
)

// durableFS makes fsync(2) on a MOUNT_CACHED file return only once the
// file's current content is in the bucket. rclone's VFS fsyncs the cache
// file only and uploads after the last close; so after the inner Fsync this
// wrapper uploads the cached content itself (the write-back upload after
// close still happens, and is then an idempotent rewrite).
//
// The kernel names the file by node ID only, so the wrapper learns each
// node's parent and name from the replies that create kernel references
// (Lookup, Create, Mkdir, Mknod, Symlink, Link) and follows Rename and
// Forget. READDIRPLUS is disabled by the server options, so no reference is
// created elsewhere.
type durableFS struct {
	fuse.RawFileSystem
	v     *vfs.VFS
	f     rfs.Fs
	log   *slog.Logger
	paths pathTable
}

func newDurableFS(inner fuse.RawFileSystem, v *vfs.VFS, log *slog.Logger) *durableFS {
	return &durableFS{RawFileSystem: inner, v: v, f: v.Fs(), log: log, paths: pathTable{nodes: map[uint64]*pnode{}, names: map[pkey]uint64{}}}
}

func (d *durableFS) Lookup(c <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	st := d.RawFileSystem.Lookup(c, h, name, out)
	if st.Ok() {
		d.paths.learn(out.NodeId, h.NodeId, name)
	}
	return st
}

func (d *durableFS) Create(c <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	st := d.RawFileSystem.Create(c, in, name, out)
	if st.Ok() {
		d.paths.learn(out.NodeId, in.NodeId, name)
	}
	return st
}

func (d *durableFS) Mkdir(c <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	st := d.RawFileSystem.Mkdir(c, in, name, out)
	if st.Ok() {
		d.paths.learn(out.NodeId, in.NodeId, name)
	}
	return st
}

func (d *durableFS) Mknod(c <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	st := d.RawFileSystem.Mknod(c, in, name, out)
	if st.Ok() {
		d.paths.learn(out.NodeId, in.NodeId, name)
	}
	return st
}

func (d *durableFS) Symlink(c <-chan struct{}, h *fuse.InHeader, to, name string, out *fuse.EntryOut) fuse.Status {
	st := d.RawFileSystem.Symlink(c, h, to, name, out)
	if st.Ok() {
		d.paths.learn(out.NodeId, h.NodeId, name)
	}
	return st
}

func (d *durableFS) Link(c <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	st := d.RawFileSystem.Link(c, in, name, out)
	if st.Ok() {
		d.paths.learn(out.NodeId, in.NodeId, name)
	}
	return st
}

func (d *durableFS) Forget(nodeid, nlookup uint64) {
	d.paths.forget(nodeid, nlookup)
	d.RawFileSystem.Forget(nodeid, nlookup)
}

func (d *durableFS) Rename(c <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	st := d.RawFileSystem.Rename(c, in, oldName, newName)
	if st.Ok() {
		d.paths.rename(in.NodeId, oldName, in.Newdir, newName)
	}
	return st
}

func (d *durableFS) Unlink(c <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	st := d.RawFileSystem.Unlink(c, h, name)
	if st.Ok() {
		d.paths.unlink(h.NodeId, name)
	}
	return st
}

func (d *durableFS) Rmdir(c <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	st := d.RawFileSystem.Rmdir(c, h, name)
	if st.Ok() {
		d.paths.unlink(h.NodeId, name)
	}
	return st
}

// Fsync syncs the cache file, then uploads the file and answers only once
// the store has it. A failed upload is EIO: the caller must not assume the
// data is durable (it stays in the cache and is uploaded after close).
func (d *durableFS) Fsync(c <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	st := d.RawFileSystem.Fsync(c, in)
	if !st.Ok() {
		return st
	}
	p, ok := d.paths.path(in.NodeId)
	if !ok {
		d.log.Warn("fsync of a file whose path is unknown; not uploaded now", "node", in.NodeId)
		return fuse.EIO
	}
	if err := d.upload(p); err != nil {
		d.log.Warn("fsync upload failed", "path", p, "err", err)
		return fuse.EIO
	}
	return fuse.OK
}

// upload puts the cached content of p into the store.
func (d *durableFS) upload(p string) error {
	h, err := d.v.OpenFile(p, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer h.Close()
	fi, err := h.Stat()
	if err != nil {
		return err
	}
	info := object.NewStaticObjectInfo(p, fi.ModTime(), fi.Size(), true, nil, d.f)
	_, err = d.f.Put(context.Background(), io.NewSectionReader(h, 0, fi.Size()), info)
	return err
}

// pathTable maps kernel node IDs to (parent, name), following the kernel's
// reference counts. Node 1 is the root.
type pathTable struct {
	mu    sync.Mutex
	nodes map[uint64]*pnode
	names map[pkey]uint64
}

type pnode struct {
	key     pkey
	lookups uint64
}

type pkey struct {
	parent uint64
	name   string
}

func (t *pathTable) learn(id, parent uint64, name string) {
	if id == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.nodes[id]
	if n == nil {
		n = &pnode{}
		t.nodes[id] = n
	}
	if n.key != (pkey{}) && t.names[n.key] == id {
		delete(t.names, n.key)
	}
	n.key = pkey{parent, name}
	n.lookups++
	t.names[n.key] = id
}

func (t *pathTable) forget(id, count uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.nodes[id]
	if n == nil {
		return
	}
	if n.lookups > count {
		n.lookups -= count
		return
	}
	if t.names[n.key] == id {
		delete(t.names, n.key)
	}
	delete(t.nodes, id)
}

func (t *pathTable) rename(oldParent uint64, oldName string, newParent uint64, newName string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := pkey{oldParent, oldName}
	id, ok := t.names[old]
	if !ok {
		return
	}
	delete(t.names, old)
	nk := pkey{newParent, newName}
	t.names[nk] = id
	t.nodes[id].key = nk
}

func (t *pathTable) unlink(parent uint64, name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.names, pkey{parent, name})
}

// path returns the VFS path of node id.
func (t *pathTable) path(id uint64) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var parts []string
	for depth := 0; id != 1; depth++ {
		n := t.nodes[id]
		if n == nil || depth > 4096 {
			return "", false
		}
		parts = append(parts, n.key.name)
		id = n.key.parent
	}
	for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
		parts[i], parts[j] = parts[j], parts[i]
	}
	return path.Join(parts...), true
}
