package fuseserver

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"os"
	"sync"
	"syscall"

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
//   - Before a Write through a handle that has not yet written, every byte
//     of the file's bucket object (below the file's size) that rclone's
//     metadata does not list as present is read through the VFS, which
//     keeps what it reads in the cache; before a SetAttr that sets a size
//     other than 0, every such byte below that size. A file with no object
//     in the bucket has nothing to fetch; a clean file cached from another
//     version of the object than the bucket's lacks every byte (rclone
//     drops it at the open).
//   - The file is looked up in the VFS only when the metadata does not
//     show it whole: a write to a file whole in the cache needs no store
//     (the VFS lists a directory again once its listing expired).
//   - A fetch that fails, or that the application interrupts, fails the
//     call (EIO, or ENOSPC where fullFS sees a full cache; EINTR) and
//     passes nothing on: nothing is changed.
//   - The fetch's VFS handle stays open until the change has reached
//     rclone, and then what rclone lacks is fetched once more (its cleaner
//     may have emptied the clean file in between, Item.Reset); the file is
//     dirty by then, and rclone never drops a dirty file's bytes nor
//     downloads over the application's. A failure then is logged as an
//     error (the change is done; its close will need the store).
//   - A file no name leads to any more (unlinked, replaced by a rename)
//     is not fetched: nothing of it is uploaded.
//   - A handle that created an empty file, or wrote once, writes on
//     without a check until it is released.
//   - A file's fetches run alone: no write through another handle of the
//     file runs during a fetch, the change it precedes and the fetch after
//     it (nodes).
type wholeFS struct {
	fuse.RawFileSystem
	v     *vfs.VFS
	cache cachejournal.Layout
	paths *pathTable
	log   *slog.Logger

	mu    sync.Mutex
	whole map[uint64]bool // open handle -> its file is known wholly cached

	// nodes orders each file's fetches and writes: a fetch, the change it
	// precedes and the fetch after it hold the file's lock alone; writes
	// through handles known whole share it. rclone's download skips only
	// ranges already marked present, and its write marks them after
	// writing them, so a download beside a write could put bucket bytes
	// over it.
	nodes nodeTable[sync.RWMutex]

	// skip, if set, names the nodes whose file is written through
	// passthrough: rclone must not read them (passthrough_writer.go), so
	// their truncates fetch nothing.
	skip func(node uint64) bool
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
	n := w.nodes.get(in.NodeId)
	defer w.nodes.put(in.NodeId, nil)
	if w.known(in.Fh) {
		n.RLock()
		defer n.RUnlock()
		return w.RawFileSystem.Write(c, in, data)
	}
	n.Lock()
	defer n.Unlock()
	f, st := w.fetch(c, in.NodeId, math.MaxInt64)
	if !st.Ok() {
		return 0, st
	}
	defer f.close()
	written, st := w.RawFileSystem.Write(c, in, data)
	if st.Ok() {
		w.mark(in.Fh)
		f.again(c, math.MaxInt64)
	}
	return written, st
}

func (w *wholeFS) SetAttr(c <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	if in.Valid&fuse.FATTR_SIZE == 0 || in.Size == 0 || w.skip != nil && w.skip(in.NodeId) {
		return w.RawFileSystem.SetAttr(c, in, out)
	}
	n := w.nodes.get(in.NodeId)
	defer w.nodes.put(in.NodeId, nil)
	n.Lock()
	defer n.Unlock()
	limit := int64(min(in.Size, math.MaxInt64))
	f, st := w.fetch(c, in.NodeId, limit)
	if !st.Ok() {
		return st
	}
	defer f.close()
	st = w.RawFileSystem.SetAttr(c, in, out)
	if st.Ok() {
		f.again(c, limit)
	}
	return st
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

// fetching is one fetch of a file's missing bytes: the VFS handle it read
// through (nil until it needed one).
type fetching struct {
	w *wholeFS
	p string // "" when the file is not fetched (no name leads to it)
	h vfs.Handle
}

func (f *fetching) close() {
	if f.h != nil {
		_ = f.h.Close()
	}
}

// fetch reads into the cache the bytes below limit of node's file that
// rclone lacks; the caller closes what it returns.
func (w *wholeFS) fetch(c <-chan struct{}, node uint64, limit int64) (*fetching, fuse.Status) {
	f := &fetching{w: w}
	p, ok := w.paths.attachedPath(node)
	if !ok {
		return f, fuse.OK // no name leads to the file any more: nothing of it is uploaded
	}
	f.p = p
	missing, err := w.missing(p, limit)
	if errors.Is(err, vfs.ENOENT) {
		f.p = ""
		return f, fuse.OK // gone from the VFS meanwhile: as above
	} else if err != nil {
		w.log.Warn("change refused: the file could not be looked up to fetch the bytes the cache lacks", "path", p, "err", err)
		return f, fuse.EIO
	}
	if err := f.read(c, missing); errors.Is(err, syscall.EINTR) {
		f.close()
		return f, fuse.EINTR
	} else if err != nil {
		w.log.Warn("change refused: the bytes of the file the cache lacks could not be fetched from the store first, so that its upload would not depend on the store later", "path", p, "err", err)
		f.close()
		return f, fuse.EIO
	}
	return f, fuse.OK
}

// again fetches, once the change reached rclone, what rclone lacks of the
// file by then: its cleaner may have emptied the clean file (Item.Reset)
// between the fetch and the change. The file is dirty now, so nothing is
// dropped again, and rclone's download never writes over the
// application's bytes (WriteAtNoOverwrite).
func (f *fetching) again(c <-chan struct{}, limit int64) {
	if f.p == "" {
		return
	}
	missing, err := f.w.missing(f.p, limit)
	if err == nil {
		err = f.read(c, missing)
	}
	if err != nil && !errors.Is(err, vfs.ENOENT) {
		f.w.log.Error("a changed file lacks bytes only the bucket has (the cache dropped them during the change): its close needs the store", "path", f.p, "err", err)
	}
}

// read reads the ranges missing through f's handle, opening it first.
func (f *fetching) read(c <-chan struct{}, missing []ranges.Range) error {
	if len(missing) == 0 {
		return nil
	}
	if f.h == nil {
		h, err := f.w.v.OpenFile(f.p, os.O_RDONLY, 0)
		if err != nil {
			return err
		}
		f.h = h
	}
	buf := make([]byte, min(fetchChunk, missing[len(missing)-1].End()-missing[0].Pos))
	for _, r := range missing {
		for off := r.Pos; off < r.End(); {
			select {
			case <-c:
				return syscall.EINTR // the application gave up
			default:
			}
			n, err := f.h.ReadAt(buf[:min(int64(len(buf)), r.End()-off)], off)
			off += int64(n)
			if errors.Is(err, io.EOF) {
				break // shorter than the object said: nothing more to fetch
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// missing lists the ranges below limit of p's bucket object, and below
// p's size, that rclone's metadata does not list as present. It looks the
// file up only when the metadata does not show it whole (the store may
// not answer, and the VFS lists a directory again once its listing
// expired): a dirty file whole in the cache needs nothing, and neither
// does a clean one when the lookup fails (rclone opens it with the object
// it already has). A clean file cached from another version of the
// object than the bucket's lacks everything: rclone drops it at the open.
func (w *wholeFS) missing(p string, limit int64) ([]ranges.Range, error) {
	info, ierr := w.cache.Info(p)
	whole := ierr == nil && len(cachejournal.Missing(info.Rs, min(info.Size, limit))) == 0
	if whole && info.Dirty {
		return nil, nil
	}
	node, err := w.v.Stat(p)
	if err != nil {
		if whole && !errors.Is(err, vfs.ENOENT) {
			return nil, nil
		}
		return nil, err
	}
	o, ok := node.DirEntry().(rfs.Object)
	if !ok || o == nil {
		return nil, nil // nothing in the bucket to fetch
	}
	if ierr != nil || (!info.Dirty && info.Fingerprint != "" &&
		rfs.Fingerprint(context.Background(), o, w.v.Opt.FastFingerprint) != info.Fingerprint) {
		info.Rs = nil // nothing cached, unreadable metadata, or another version: fetch it all
	}
	return cachejournal.Missing(info.Rs, min(node.Size(), o.Size(), limit)), nil
}
