package fuseserver

import (
	"context"
	"io"
	"log/slog"
	"os"

	"github.com/hanwen/go-fuse/v2/fuse"
	rfs "github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/object"
	"github.com/rclone/rclone/vfs"
)

// durableFS makes fsync(2) on a MOUNT_CACHED file return only once the
// file's current content is in the bucket. rclone's VFS fsyncs the cache
// file only and uploads after the last close; so after the inner Fsync this
// wrapper uploads the cached content itself (the write-back upload after
// close still happens, and is then an idempotent rewrite). The kernel
// names the file by node ID only: paths come from a trackFS below.
type durableFS struct {
	fuse.RawFileSystem
	v     *vfs.VFS
	f     rfs.Fs
	log   *slog.Logger
	paths *pathTable
}

func newDurableFS(inner fuse.RawFileSystem, paths *pathTable, v *vfs.VFS, log *slog.Logger) *durableFS {
	return &durableFS{RawFileSystem: inner, v: v, f: v.Fs(), log: log, paths: paths}
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
