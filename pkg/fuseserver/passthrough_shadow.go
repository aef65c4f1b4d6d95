package fuseserver

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/rclone/rclone/vfs"
	"golang.org/x/sys/unix"

	"github.com/bucket-csi/bucket-csi/pkg/plainfile"
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
//     LSEEK; the attribute changes, renames and unlinks that hold writers
//     too) the server makes the shadow as long as the written file and
//     gives it its times (syncShadow), under the node's mutex, so no adopt
//     runs in between; a LOOKUP's answer is corrected after it.
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
	if shadow, err = plainfile.Open(data, os.O_RDWR, 0); err != nil {
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
	// The descriptor itself (the shadow has no path): AT_EMPTY_PATH, which
	// every kernel with FUSE passthrough (6.9 and later) takes.
	return unix.UtimesNanoAt(int(b.shadow.Fd()), "", []unix.Timespec{fst.Atim, fst.Mtim}, unix.AT_EMPTY_PATH)
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
	if err := b.shadow.Truncate(0); err != nil {
		return 0, time.Time{}, err
	}
	if size == 0 {
		return 0, fi.ModTime(), nil // nothing to list; rclone's file is empty too
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

// GetAttr, Statx and Lseek (whose fallback in go-fuse reads the size)
// answer from rclone's size and time, for a writer's node its shadow's:
// each first syncs the shadow, holding the node's mutex (holdWriters)
// over rclone's answer, which is local. READDIRPLUS is off (Serve), so
// listings carry no sizes.
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

func (p *passthroughFS) Lseek(c <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status {
	if p.hidden.has(in.NodeId) {
		defer p.holdWriters(in.NodeId)()
	}
	return p.RawFileSystem.Lseek(c, in, out)
}

// Lookup may have rclone list the directory from the store, so it does
// not hold a writer's mutex over rclone's answer; it corrects the answer
// after, whatever name form led to the node: a live writer's size and
// times from the written file, and, after an adopt that ran meanwhile
// (it empties the shadow for a moment), rclone's answer again.
func (p *passthroughFS) Lookup(c <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	adopts := p.adopts.Load()
	st := p.RawFileSystem.Lookup(c, h, name, out)
	if !st.Ok() || !p.hidden.has(out.NodeId) && p.adopts.Load() == adopts {
		return st
	}
	// The lookup stands (the kernel now holds the node); only its
	// attributes change, where they can be had.
	held, release := p.lockWriters([]uint64{out.NodeId})
	defer release()
	if len(held) == 1 {
		writtenAttr(held[0].n.backing, &out.Attr)
		return st
	}
	in := fuse.GetAttrIn{InHeader: fuse.InHeader{NodeId: out.NodeId, Caller: h.Caller}}
	var again fuse.AttrOut
	if p.RawFileSystem.GetAttr(c, &in, &again).Ok() {
		out.Attr = again.Attr
	}
	return st
}

// writtenAttr sets a's size and times from b's written file, as rclone
// states them (blocks of 512 bytes, the change time the modification's);
// a unchanged if the file cannot be read.
func writtenAttr(b *ptBacking, a *fuse.Attr) {
	var st unix.Stat_t
	if unix.Fstat(int(b.f.Fd()), &st) != nil {
		return
	}
	a.Size = uint64(st.Size)
	a.Blocks = (a.Size + 511) / 512
	a.Atime, a.Atimensec = uint64(st.Atim.Sec), uint32(st.Atim.Nsec)
	a.Mtime, a.Mtimensec = uint64(st.Mtim.Sec), uint32(st.Mtim.Nsec)
	a.Ctime, a.Ctimensec = a.Mtime, a.Mtimensec
}
