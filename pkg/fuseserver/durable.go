package fuseserver

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	rfs "github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/object"
	"github.com/rclone/rclone/vfs"

	"github.com/bucket-csi/bucket-csi/pkg/cachejournal"
)

// durableFS makes fsync(2) on a MOUNT_CACHED file return only once the
// file's current content is in the bucket. rclone's VFS fsyncs the cache
// file only and uploads after the last close; so after the inner Fsync this
// wrapper uploads the cached content itself (the write-back upload after
// close still happens, and is then an idempotent rewrite). The kernel
// names the file by node ID only: paths come from a trackFS below.
//
// Only a file with changes not yet in the bucket is uploaded: rclone's
// cache metadata says so (Dirty, saved at the first write). An fsync of a
// clean file, from any handle (coreutils' `sync FILE` opens read-only), has
// nothing to make durable, and an upload of its cached copy would replace
// a newer object another client put since. A read-only volume uploads
// nothing.
type durableFS struct {
	fuse.RawFileSystem
	v        *vfs.VFS
	f        rfs.Fs
	log      *slog.Logger
	paths    *pathTable
	j        *cachejournal.Journal
	cache    cachejournal.Layout
	readOnly bool
}

func newDurableFS(inner fuse.RawFileSystem, paths *pathTable, v *vfs.VFS, j *cachejournal.Journal, readOnly bool, log *slog.Logger) *durableFS {
	return &durableFS{RawFileSystem: inner, v: v, f: v.Fs(), log: log, paths: paths, j: j, cache: j.Layout(), readOnly: readOnly}
}

// Fsync syncs the cache file, then, if the file has changes not yet
// uploaded, uploads it and answers only once the store has it. A failed
// upload is EIO: the caller must not assume the data is durable (it stays
// in the cache and is uploaded after close).
func (d *durableFS) Fsync(c <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	st := d.RawFileSystem.Fsync(c, in)
	if !st.Ok() || d.readOnly {
		return st
	}
	p, ok := d.paths.path(in.NodeId)
	if !ok {
		d.log.Warn("fsync of a file whose path is unknown; not uploaded now", "node", in.NodeId)
		return fuse.EIO
	}
	if d.clean(p) {
		return fuse.OK
	}
	if err := d.upload(p); err != nil {
		d.log.Warn("fsync upload failed", "path", p, "err", err)
		return fuse.EIO
	}
	return fuse.OK
}

// clean reports whether p has no changes to upload: the cache's metadata
// reads as not dirty, or the cache holds no copy of p and the bucket holds
// its object; while the metadata may be an earlier file's (a Detach of p,
// see detachFS), the journal has no record of p. (rclone saves a created
// file's metadata as dirty when the file is opened, so a new file is
// uploaded; without metadata or an object, or with metadata that cannot
// be read or decoded, the upload is the safe side.)
func (d *durableFS) clean(p string) bool {
	if d.j.Detached(p) {
		// The metadata may be an earlier file's: the journal knows
		// whether this one has writes not yet uploaded.
		return !d.j.Recorded(p)
	}
	info, err := d.cache.Info(p)
	switch {
	case err == nil:
		return !info.Dirty
	case !errors.Is(err, fs.ErrNotExist):
		return false
	}
	node, err := d.v.Stat(p)
	if err != nil {
		return false
	}
	o, ok := node.DirEntry().(rfs.Object)
	return ok && o != nil
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
	return d.put(p, h, fi.Size(), fi.ModTime())
}

// put puts the first size bytes of r into the store as p.
func (d *durableFS) put(p string, r io.ReaderAt, size int64, modTime time.Time) error {
	info := object.NewStaticObjectInfo(p, modTime, size, true, nil, d.f)
	_, err := d.f.Put(context.Background(), io.NewSectionReader(r, 0, size), info)
	return err
}
