package fuseserver

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"sync"

	"github.com/hanwen/go-fuse/v2/fuse"
	rfs "github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/lib/ranges"
	"github.com/rclone/rclone/vfs"

	"github.com/bucket-csi/bucket-csi/pkg/cachejournal"
)

// wholeFS puts a file's bucket bytes wholly into the cache before the
// first change to the file reaches rclone, on read-write MOUNT_CACHED
// volumes.
//
// Why: rclone fetches the bytes a changed file lacks at the file's last
// close, before it queues the upload (rclone v1.76.0, vfscache
// item._actualClose, _ensure). If the store does not answer then, the
// close fails half done, after the application was told its writes
// succeeded: the file stays dirty and unqueued (the volume's unstage waits
// until some later server queues it), and rclone's item keeps its cache
// file descriptor, so the next open of the file fails inside rclone, which
// then removes the cached file, the edit with it (item.open, _createFile's
// "didn't Close file", _remove). Fetched before the first change, the
// bytes are there at the close, which then needs no store; a store that
// does not answer fails the change itself, before anything is changed.
//
// Contract:
//   - Before a Write through a handle that has not yet written, and before
//     every SetAttr that sets a size other than 0, every byte below the
//     smaller of the file's size and its bucket object's size that
//     rclone's metadata does not list as present is read through the VFS
//     (which keeps what it reads in the cache). A file with no object in
//     the bucket has nothing to fetch.
//   - The fetch's VFS handle stays open until the change has reached
//     rclone, so the cache cannot drop the fetched bytes in between; after
//     the change the file is dirty, and rclone drops no byte of a dirty or
//     open file.
//   - A fetch that fails fails the call with EIO (ENOSPC where fullFS sees
//     a full cache) and passes nothing on: nothing is changed.
//   - A file no name leads to any more (unlinked, replaced by a rename)
//     is not fetched: nothing of it is uploaded.
//   - A handle that created an empty file, or wrote once, writes on
//     without a check until it is released.
type wholeFS struct {
	fuse.RawFileSystem
	v     *vfs.VFS
	cache cachejournal.Layout
	paths *pathTable
	log   *slog.Logger

	mu    sync.Mutex
	whole map[uint64]bool // open handle -> its file is known wholly cached
}

func newWholeFS(inner fuse.RawFileSystem, v *vfs.VFS, cache cachejournal.Layout, paths *pathTable, log *slog.Logger) *wholeFS {
	return &wholeFS{RawFileSystem: inner, v: v, cache: cache, paths: paths, log: log, whole: map[uint64]bool{}}
}

// fetchChunk is how much one read of a fetch asks the VFS for.
const fetchChunk = 1 << 20

func (w *wholeFS) Create(c <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	st := w.RawFileSystem.Create(c, in, name, out)
	if st.Ok() && out.Attr.Size == 0 {
		w.mark(out.Fh)
	}
	return st
}

func (w *wholeFS) Write(c <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	if w.known(in.Fh) {
		return w.RawFileSystem.Write(c, in, data)
	}
	done, st := w.fetch(in.NodeId)
	if !st.Ok() {
		return 0, st
	}
	defer done()
	n, st := w.RawFileSystem.Write(c, in, data)
	if st.Ok() {
		w.mark(in.Fh)
	}
	return n, st
}

func (w *wholeFS) SetAttr(c <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	if in.Valid&fuse.FATTR_SIZE == 0 || in.Size == 0 {
		return w.RawFileSystem.SetAttr(c, in, out)
	}
	done, st := w.fetch(in.NodeId)
	if !st.Ok() {
		return st
	}
	defer done()
	return w.RawFileSystem.SetAttr(c, in, out)
}

func (w *wholeFS) Release(c <-chan struct{}, in *fuse.ReleaseIn) {
	w.mu.Lock()
	delete(w.whole, in.Fh)
	w.mu.Unlock()
	w.RawFileSystem.Release(c, in)
}

func (w *wholeFS) mark(fh uint64) {
	w.mu.Lock()
	w.whole[fh] = true
	w.mu.Unlock()
}

func (w *wholeFS) known(fh uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.whole[fh]
}

// fetch reads into the cache the bytes of node's file rclone lacks, and
// returns the function that closes the handle it read through.
func (w *wholeFS) fetch(node uint64) (done func(), st fuse.Status) {
	p, ok := w.paths.attachedPath(node)
	if !ok {
		return func() {}, fuse.OK // no name leads to the file any more: nothing of it is uploaded
	}
	missing, err := w.missing(p)
	if errors.Is(err, vfs.ENOENT) {
		return func() {}, fuse.OK // gone from the VFS meanwhile: as above
	} else if err != nil {
		w.log.Warn("change refused: the file could not be looked up", "path", p, "err", err)
		return nil, fuse.EIO
	}
	if len(missing) == 0 {
		return func() {}, fuse.OK
	}
	h, err := w.v.OpenFile(p, os.O_RDONLY, 0)
	if err != nil {
		w.log.Warn("change refused: the file could not be opened to fetch its bytes first", "path", p, "err", err)
		return nil, fuse.EIO
	}
	buf := make([]byte, min(fetchChunk, missing[len(missing)-1].End()-missing[0].Pos))
	for _, r := range missing {
		for off := r.Pos; off < r.End(); {
			n, err := h.ReadAt(buf[:min(int64(len(buf)), r.End()-off)], off)
			off += int64(n)
			if errors.Is(err, io.EOF) {
				break // shorter than the object said: nothing more to fetch
			}
			if err != nil {
				_ = h.Close()
				w.log.Warn("change refused: the bytes of the file the cache lacks could not be fetched from the store first, so that its upload would not depend on the store later", "path", p, "err", err)
				return nil, fuse.EIO
			}
		}
	}
	return func() { _ = h.Close() }, fuse.OK
}

// missing lists the ranges of p's bucket object, below p's size, that
// rclone's metadata does not list as present.
func (w *wholeFS) missing(p string) ([]ranges.Range, error) {
	node, err := w.v.Stat(p)
	if err != nil {
		return nil, err
	}
	o, ok := node.DirEntry().(rfs.Object)
	if !ok || o == nil {
		return nil, nil // nothing in the bucket to fetch
	}
	size := min(node.Size(), o.Size())
	info, err := w.cache.Info(p)
	if err != nil {
		info.Rs = nil // no metadata (nothing cached yet) or unreadable: fetch it all
	}
	return cachejournal.Missing(info.Rs, size), nil
}
