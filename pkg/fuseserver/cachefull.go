package fuseserver

import (
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// fullFS answers ENOSPC, not EIO, for a write-side call that fails while
// the volume's cache filesystem is full. The cache of a MOUNT_CACHED
// volume is a filesystem of the cache limit's size (stage.Cached); rclone
// makes room by dropping clean cached data, and when all it holds is
// written data not yet uploaded, its writes fail with ENOSPC, which
// rclone's FUSE layer reports as EIO. A program told "no space" knows what
// happened (and `df` of the volume shows it); one told "I/O error" does
// not.
//
// rclone frees room only in its cleaner (every cachePollInterval, or when
// a read runs out of space), not when a write does, and keeps a closed
// file's handle for a while first; so a write refused by a full cache
// waits for up to that long for room to appear, then is tried once more.
//
// Contract: only calls that fail with EIO change, to ENOSPC (or, for a
// write interrupted while it waits, EINTR), and only while the cache
// directory's filesystem has less than the call's size and fullMargin
// free, or fewer than inodeMargin free inodes. Every other answer passes
// through. A write is repeated at most once, whole, at its offset (rclone
// may have written part of it; the repeat writes the same bytes). A write
// interrupted while it waits for room (the kernel's FUSE_INTERRUPT: its
// caller got a signal) answers EINTR at once, as go-fuse asks: a full
// cache is not yet certain. Go's runtime signals its own threads, and Go
// and C code that loops on EINTR write again, each time with a new wait
// (so a writer signalled more often than the wait lasts never gets
// ENOSPC).
type fullFS struct {
	fuse.RawFileSystem
	dir    string
	wait   time.Duration                             // how long a refused write waits for room
	statfs func(path string, s *unix.Statfs_t) error // unix.Statfs; tests replace it
}

// fullMargin is the free space below which a failed call counts as one
// the full cache refused: ext4 also needs blocks for its own metadata.
// inodeMargin is the same for inodes (rclone takes two per cached file).
const (
	fullMargin  = 1 << 20
	inodeMargin = 16
)

func newFullFS(inner fuse.RawFileSystem, cacheDir string, wait time.Duration) *fullFS {
	return &fullFS{RawFileSystem: inner, dir: cacheDir, wait: wait, statfs: unix.Statfs}
}

// room reports whether the cache's filesystem has need bytes and the
// margin free (true when it cannot tell).
func (f *fullFS) room(need int) bool {
	var s unix.Statfs_t
	if err := f.statfs(f.dir, &s); err != nil {
		return true
	}
	// Files == 0: the filesystem has no inode count (btrfs).
	return int64(s.Bavail)*s.Bsize >= int64(need)+fullMargin && (s.Files == 0 || s.Ffree >= inodeMargin)
}

// full turns st into ENOSPC when it is EIO and the cache has less than
// need bytes (and the margin) free.
func (f *fullFS) full(st fuse.Status, need int) fuse.Status {
	if st == fuse.EIO && !f.room(need) {
		return fuse.Status(unix.ENOSPC)
	}
	return st
}

func (f *fullFS) Write(c <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	n, st := f.RawFileSystem.Write(c, in, data)
	if st != fuse.EIO || f.room(len(data)) {
		return n, st
	}
	for deadline := time.Now().Add(f.wait); time.Now().Before(deadline); {
		select {
		case <-c: // the caller got a signal
			return n, fuse.EINTR
		case <-time.After(100 * time.Millisecond):
		}
		if f.room(len(data)) {
			n, st = f.RawFileSystem.Write(c, in, data)
			return n, f.full(st, len(data))
		}
	}
	return n, fuse.Status(unix.ENOSPC)
}

func (f *fullFS) Create(c <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	return f.full(f.RawFileSystem.Create(c, in, name, out), 0)
}

func (f *fullFS) Mkdir(c <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	return f.full(f.RawFileSystem.Mkdir(c, in, name, out), 0)
}

func (f *fullFS) SetAttr(c <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	return f.full(f.RawFileSystem.SetAttr(c, in, out), 0)
}

func (f *fullFS) Fallocate(c <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	return f.full(f.RawFileSystem.Fallocate(c, in), int(min(in.Length, 1<<30)))
}

func (f *fullFS) Flush(c <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	return f.full(f.RawFileSystem.Flush(c, in), 0)
}

func (f *fullFS) Fsync(c <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	return f.full(f.RawFileSystem.Fsync(c, in), 0)
}

func (f *fullFS) Mknod(c <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	return f.full(f.RawFileSystem.Mknod(c, in, name, out), 0)
}

func (f *fullFS) Symlink(c <-chan struct{}, header *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	return f.full(f.RawFileSystem.Symlink(c, header, target, name, out), 0)
}

func (f *fullFS) Link(c <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	return f.full(f.RawFileSystem.Link(c, in, name, out), 0)
}

func (f *fullFS) Rename(c <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	return f.full(f.RawFileSystem.Rename(c, in, oldName, newName), 0)
}
