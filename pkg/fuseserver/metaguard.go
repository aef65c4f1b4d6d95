package fuseserver

import (
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/bucket-csi/bucket-csi/pkg/bucket"
)

// metaGuard reserves bucket.MetaDir at the root of a mount that shows the
// bucket root, so nothing in a pod can create, write, rename or delete the
// driver's own objects.
//
// Contract: a lookup of MetaDir in the root answers EPERM (so does, through
// the kernel's path walk, every operation on it or anything below it: the
// kernel never holds a node for it, and caches no negative entry for an
// error other than ENOENT), and every operation that would make, replace or
// remove that name in the root (mknod, mkdir, create, symlink, link, rename
// to or from it, unlink, rmdir) answers EPERM without reaching the VFS, in
// case a kernel skips the lookup. Listings keep hiding the name (the VFS
// filter of hideMetaDir). The rule holds for every caller, root included.
type metaGuard struct {
	fuse.RawFileSystem
}

// reserved reports whether (parent, name) is the metadata directory.
func reserved(parent uint64, name string) bool {
	return parent == fuse.FUSE_ROOT_ID && name == bucket.MetaDir
}

func (g metaGuard) Lookup(c <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	if reserved(h.NodeId, name) {
		return fuse.EPERM
	}
	return g.RawFileSystem.Lookup(c, h, name, out)
}

func (g metaGuard) Mknod(c <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	if reserved(in.NodeId, name) {
		return fuse.EPERM
	}
	return g.RawFileSystem.Mknod(c, in, name, out)
}

func (g metaGuard) Mkdir(c <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	if reserved(in.NodeId, name) {
		return fuse.EPERM
	}
	return g.RawFileSystem.Mkdir(c, in, name, out)
}

func (g metaGuard) Create(c <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	if reserved(in.NodeId, name) {
		return fuse.EPERM
	}
	return g.RawFileSystem.Create(c, in, name, out)
}

func (g metaGuard) Symlink(c <-chan struct{}, h *fuse.InHeader, to, name string, out *fuse.EntryOut) fuse.Status {
	if reserved(h.NodeId, name) {
		return fuse.EPERM
	}
	return g.RawFileSystem.Symlink(c, h, to, name, out)
}

func (g metaGuard) Link(c <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	if reserved(in.NodeId, name) {
		return fuse.EPERM
	}
	return g.RawFileSystem.Link(c, in, name, out)
}

func (g metaGuard) Rename(c <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	if reserved(in.NodeId, oldName) || reserved(in.Newdir, newName) {
		return fuse.EPERM
	}
	return g.RawFileSystem.Rename(c, in, oldName, newName)
}

func (g metaGuard) Unlink(c <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	if reserved(h.NodeId, name) {
		return fuse.EPERM
	}
	return g.RawFileSystem.Unlink(c, h, name)
}

func (g metaGuard) Rmdir(c <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	if reserved(h.NodeId, name) {
		return fuse.EPERM
	}
	return g.RawFileSystem.Rmdir(c, h, name)
}
