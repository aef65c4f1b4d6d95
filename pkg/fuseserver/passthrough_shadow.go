package fuseserver

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/rclone/rclone/vfs"
	"golang.org/x/sys/unix"
)

// A passthrough writer's file and rclone's shadow of it.
//
// rclone lists as present only the bytes written through it, and takes
// an open cache item's size and time from its own descriptor of the data
// file (vfscache's Item._stat), not from the path. So a writer's file is
// not the one rclone opened: at the create the server renames a new empty
// file of its own over the path of the empty data file rclone has just
// made and opened. The kernel writes the file at the path (which the
// write journal guards like any cache file: a killed server's successor
// uploads it whole); rclone's descriptor is left on its own file, now
// unlinked: the shadow.
//
//   - While the writer lives, rclone reports the shadow's size and time.
//     Before every request whose answer carries them (GETATTR, STATX,
//     LOOKUP, READDIRPLUS; the attribute changes, renames and unlinks that
//     hold writers too) the server makes the shadow as long as the written
//     file and gives it its times (syncShadow), under the node's mutex, so
//     no adopt runs in between.
//   - The adopt (the writer's end) cuts the shadow to zero and writes the
//     written file's last byte through rclone at its offset: rclone, which
//     then reads size 0 from its descriptor, lists every byte before it as
//     written (vfscache's Item.WriteAt marks the gap past the size it last
//     read) and the byte itself lands in the shadow. No byte of the file
//     is copied; the upload reads the path. A test holds rclone to this
//     (TestShadowLetsOneByteListTheFile).

// writerPrefix starts the name of a writer's file while it is made, in
// the cache directory of the file it replaces (the same filesystem, so the
// rename is atomic). A kill before the rename leaves it there without
// metadata, and rclone's next cache reload removes it.
const writerPrefix = ".bucket-csi-writer-"

// writerFiles makes the files of a writer of path, whose cache item rclone
// has just created and opened: f, the file the kernel will write, not yet
// at the path (placeWriter puts it there), and shadow, a descriptor of
// rclone's data file.
func (p *passthroughFS) writerFiles(path string) (f, shadow *os.File, err error) {
	data := p.cache.DataPath(path)
	if shadow, err = os.OpenFile(data, os.O_RDWR, 0); err != nil {
		return nil, nil, err
	}
	if f, err = os.CreateTemp(filepath.Dir(data), writerPrefix+"*"); err != nil {
		shadow.Close()
		return nil, nil, err
	}
	return f, shadow, nil
}

// placeWriter renames the writer's file f over path's data file, whose
// descriptor is shadow: both must still be the empty file rclone made.
func (p *passthroughFS) placeWriter(path string, f, shadow *os.File) error {
	data := p.cache.DataPath(path)
	sfi, err := shadow.Stat()
	if err != nil {
		return err
	}
	now, err := os.Stat(data)
	if err != nil {
		return err
	}
	if !os.SameFile(now, sfi) || sfi.Size() != 0 {
		return fmt.Errorf("%s's cache file changed under the create", path)
	}
	return os.Rename(f.Name(), data)
}

// dropWriterFiles undoes writerFiles when the writer is not granted.
func dropWriterFiles(f, shadow *os.File) {
	_ = os.Remove(f.Name())
	f.Close()
	shadow.Close()
}

// syncShadow makes the shadow of b (a writer's backing) as long as the
// written file and gives it the file's times, so rclone reports them.
// Call with the node's mutex held.
func (b *ptBacking) syncShadow() error {
	if b == nil || b.shadow == nil {
		return nil
	}
	var fst, sst unix.Stat_t
	if err := unix.Fstat(int(b.f.Fd()), &fst); err != nil {
		return err
	}
	if err := unix.Fstat(int(b.shadow.Fd()), &sst); err != nil {
		return err
	}
	if sst.Size != fst.Size {
		if err := b.shadow.Truncate(fst.Size); err != nil {
			return err
		}
	} else if sst.Mtim == fst.Mtim && sst.Atim == fst.Atim {
		return nil
	}
	// The descriptor's own path: the shadow has no other.
	self := "/proc/self/fd/" + strconv.Itoa(int(b.shadow.Fd()))
	return unix.UtimesNanoAt(unix.AT_FDCWD, self, []unix.Timespec{fst.Atim, fst.Mtim}, 0)
}

// markWritten makes rclone list every byte of the written file of b (a
// writer's backing, its writer ended) through h, a write-capable handle
// of the file not used yet, without copying the file: see the top of this
// file. It returns the file's size and time.
func (b *ptBacking) markWritten(h vfs.Handle) (int64, time.Time, error) {
	fi, err := b.f.Stat()
	if err != nil {
		return 0, time.Time{}, err
	}
	size := fi.Size()
	if size == 0 {
		return 0, fi.ModTime(), nil // nothing to list; rclone's file is empty too
	}
	if err := b.shadow.Truncate(0); err != nil {
		return 0, time.Time{}, err
	}
	last := make([]byte, 1)
	if _, err := b.f.ReadAt(last, size-1); err != nil {
		return 0, time.Time{}, err
	}
	if _, err := h.WriteAt(last, size-1); err != nil {
		return 0, time.Time{}, err
	}
	return size, fi.ModTime(), nil
}

// GetAttr, Statx, Lookup and ReadDirPlus answer with the size and time
// rclone reports, for a writer's node its shadow's: each first syncs the
// shadows of the writers it may answer for (holdWriters).
func (p *passthroughFS) GetAttr(c <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	if p.hidden.has(in.NodeId) {
		defer p.holdWriters(in.NodeId)()
	}
	return p.RawFileSystem.GetAttr(c, in, out)
}

func (p *passthroughFS) Statx(c <-chan struct{}, in *fuse.StatxIn, out *fuse.StatxOut) fuse.Status {
	if p.hidden.has(in.NodeId) {
		defer p.holdWriters(in.NodeId)()
	}
	return p.RawFileSystem.Statx(c, in, out)
}

func (p *passthroughFS) Lookup(c <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	if id, ok := p.paths.child(h.NodeId, name); ok && p.hidden.has(id) {
		defer p.holdWriters(id)()
	}
	return p.RawFileSystem.Lookup(c, h, name, out)
}

func (p *passthroughFS) ReadDirPlus(c <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	if ids := p.hidden.in(in.NodeId); len(ids) > 0 {
		defer p.holdWriters(ids...)()
	}
	return p.RawFileSystem.ReadDirPlus(c, in, out)
}
