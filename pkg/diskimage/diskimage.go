// Package diskimage gives a directory a filesystem of its own with a fixed
// size: an ext4 image file beside it, attached to a loop device and
// mounted on it. What a volume keeps on the node's disk there cannot take
// more than the image's size, whatever its FUSE server or a pod does: a
// write past it fails with ENOSPC in that volume only, and the node's disk
// (and every other volume's budget) stays untouched.
//
// The image takes its whole size on the disk below when it is made
// (preallocated), and again at every attach (holes a trim punched are
// filled): a write the volume's filesystem accepted must never fail later
// because the disk below filled up (ext4 would then drop the data or turn
// read-only). Its loop device takes no discards. On a filesystem that
// cannot preallocate, the image is sparse and that promise is void. It is
// created with mkfs.ext4 (e2fsprogs 1.47 or later) and needs root: the
// loop device and the mount.
package diskimage

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/mountpoint"
)

// MinSize is the smallest image Attach makes: ext4's journal and metadata
// need a few MiB of it.
const MinSize = 16 << 20

// blockSize and bytesPerInode: an image has an inode per block, so files
// that each take at least a block per inode run out of blocks before
// inodes. rclone's cache takes two inodes per cached file (data and
// metadata, a block each unless the file is empty) and makes room by bytes
// only: with an inode per 8 KiB (and blocks of 1 KiB, mke2fs's choice for
// images under 512 MiB), a cache of small files ran out of inodes with
// most of its blocks free, and stayed unable to cache another file
// (TestCachedManySmallFilesRead). The inode tables take 6.25% of the
// image (3.1% before), for write spaces too, which may hold as many
// small files.
const (
	blockSize     = 4096
	bytesPerInode = blockSize
)

// journalSize is the journal an image of size bytes gets: a 64th of it,
// 4 to 64 MiB. mke2fs's own choice with blocks of 4 KiB steps up with
// the block count (16 MiB from 128 MiB images, 32 MiB from 1 GiB): a
// mounted 128 MiB image showed 101 MiB free with it and 113 with this,
// and a 1 GiB image 909 MiB, less than a 1,023 MiB one, and 925 with
// this. 4 MiB (1,024 blocks) is the least ext4 takes and mke2fs's choice
// under 128 MiB; 64 MiB is its choice from 2 to 16 GiB, so the default
// cache of 10 GiB keeps its journal.
func journalSize(size int64) int64 {
	return min(max(size/64, 4<<20), 64<<20)
}

// ErrOutsideImage is Attach's answer for a directory that already holds
// files and has no image: what it holds (a cache from before images, with
// pending uploads) would be hidden by the mount and then removed with it,
// so the caller keeps using the plain directory.
var ErrOutsideImage = errors.New("directory holds files and has no image")

// Attach mounts the image img on dir, creating a fresh image of size bytes
// (at least MinSize) when img does not exist. It is idempotent: a dir that
// is already a mount point is left as it is. An existing image keeps its
// size (Size) and its files; it is checked (e2fsck -p) before it is
// mounted, unless a loop device still holds it (a mount elsewhere that
// outlived ours), which is then mounted again as it is: one filesystem is
// never open twice through two devices. A dir that holds files while img
// does not exist is ErrOutsideImage, and one that holds files beside an
// existing image that is not mounted is an error: neither is mounted over.
func Attach(img, dir string, size int64) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if m, err := mountpoint.Mounted(dir); err != nil || m {
		return err
	}
	empty, err := isEmpty(dir)
	if err != nil {
		return err
	}
	_, err = os.Stat(img)
	switch {
	case errors.Is(err, os.ErrNotExist) && !empty:
		return fmt.Errorf("%s: %w", dir, ErrOutsideImage)
	case errors.Is(err, os.ErrNotExist):
		if err := create(img, max(size, MinSize)); err != nil {
			return err
		}
		return mountImage(img, dir)
	case err != nil:
		return err
	case !empty:
		return fmt.Errorf("%w: %s holds files while its image %s is not mounted; move them away to use the image", fault.Unavailable, dir, img)
	}
	if dev := heldBy(img); dev != nil {
		defer dev.Close() // held open until mounted: it cannot be cleared and reused meanwhile
		return mountDevice(dev.Name(), img, dir)
	}
	if err := preallocate(img, Size(img)); err != nil {
		return err
	}
	if err := check(img); err != nil {
		return err
	}
	return mountImage(img, dir)
}

// Size returns the size of the image at img, 0 when there is none.
func Size(img string) int64 {
	st, err := os.Stat(img)
	if err != nil {
		return 0
	}
	return st.Size()
}

// Detach unmounts dir; the loop device goes with the mount. A dir that is
// not mounted is not an error; one whose files stay open for busyWait is
// fault.Pending.
//
// The wait is for a process that just exited: its leader shows as a zombie
// while its other threads still finish exiting and hold its files for a
// few milliseconds (seen with a FUSE server after its stop).
func Detach(dir string) error {
	deadline := time.Now().Add(busyWait)
	for {
		err := mountpoint.Unmount(dir)
		if !errors.Is(err, fault.Pending) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// busyWait is how long Detach retries an unmount refused as busy.
const busyWait = 2 * time.Second

// Remove detaches dir, then removes the image and the directory with what
// it holds (the files of a plain directory Attach refused to mount over).
// A dir still on another filesystem than its parent (mounted under a
// path mountinfo does not name the same way) is never emptied. A mount
// that another mount namespace still holds keeps the unlinked image, and
// its disk, until that namespace lets go.
func Remove(img, dir string) error {
	if err := Detach(dir); err != nil {
		return err
	}
	var d, parent unix.Stat_t
	err := unix.Lstat(dir, &d)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	if err == nil {
		if err := unix.Stat(filepath.Dir(dir), &parent); err != nil {
			return err
		}
		if d.Dev != parent.Dev {
			return fmt.Errorf("%w: %s is still a mount point; not removing it or its image", fault.Unavailable, dir)
		}
	}
	if err := os.Remove(img); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return os.RemoveAll(dir)
}

// create makes a preallocated file of size bytes with an empty ext4
// filesystem, under a temporary name renamed to img once complete, so a
// crash never leaves a half-made image under its final name. A disk
// without room for it is fault.Exhausted.
func create(img string, size int64) error {
	tmp := img + ".new"
	_ = os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("%w: image %s: %v", fault.Unavailable, img, err)
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = preallocate(tmp, size)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	// Allocated blocks not yet written read as zeros: mkfs writes no
	// inode tables or journal blocks, and the kernel never zeroes them
	// later. -m 0: no blocks reserved for root, this filesystem has one
	// user. -b, -i: blocks of 4 KiB and an inode per block (bytesPerInode;
	// mke2fs.conf would give images under 512 MiB blocks of 1 KiB); -J:
	// journalSize.
	out, err := exec.Command("mkfs.ext4", "-q", "-F", "-m", "0", "-b", fmt.Sprint(blockSize), "-i", fmt.Sprint(bytesPerInode),
		"-J", fmt.Sprintf("size=%d", journalSize(size)>>20), "-E", "nodiscard,assume_storage_prezeroed=1", tmp).CombinedOutput()
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("%w: mkfs.ext4 %s (e2fsprogs 1.47 or later is needed): %v: %s", fault.Unavailable, tmp, err, out)
	}
	// mkfs leaves holes (64 KiB of a 32 MiB image on tmpfs, seen with
	// mke2fs 1.47): allocate them again.
	if err := preallocate(tmp, size); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, img); err != nil {
		return err
	}
	return syncDir(filepath.Dir(img))
}

// mountImage attaches img to a free loop device and mounts its ext4 on dir.
// The loop device is set to clear itself when its last user goes: the
// mount holds it, so the unmount frees it (and a failed mount too).
func mountImage(img, dir string) error {
	dev, err := attachLoop(img)
	if err != nil {
		return fmt.Errorf("%w: attaching %s to a loop device: %v", fault.Unavailable, img, err)
	}
	defer dev.Close()
	return mountDevice(dev.Name(), img, dir)
}

// mountDevice mounts the ext4 on the loop device dev (holding img) on dir.
//
// noauto_da_alloc: without it ext4 starts writing a file's data at its
// close when the file was truncated to nothing before, and before a
// rename over another file commits (so that a file replaced in place is
// less likely to be empty after a power loss). rclone rewrites a cached
// file's metadata by truncating it, at opens, closes, a file's first
// write and time changes, about six times for a MOUNT_CACHED file
// written once (new data files and applications' O_TRUNC rewrites are
// truncated to nothing too); the flushes made each metadata rewrite take
// about 1.6 times as long (docs/benchmarks.md, "The cache's filesystem
// flushes no rewrite at close"). What is promised stays: nothing lost
// when a process is killed (the page cache holds every byte), no promise
// across a power loss (nothing in an image is fsynced but the write
// journal's own replacements, cachejournal's writeAtomic; a MOUNT_CACHED
// fsync uploads the file). After a power loss a file whose metadata was
// rewritten in the seconds before may now find it empty, and rclone
// then drops the file with its data, unless the journal's record of its
// writes survived (the repair rebuilds the metadata from it). An image
// still mounted elsewhere when it is attached again keeps the options of
// that mount.
func mountDevice(dev, img, dir string) error {
	err := unix.Mount(dev, dir, "ext4", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOATIME, mountData)
	if err != nil {
		return fmt.Errorf("%w: mounting %s (%s) on %s: %v", fault.Unavailable, img, dev, dir, err)
	}
	return nil
}

// mountData is the ext4 options of every image (see mountDevice).
const mountData = "noauto_da_alloc"

// check repairs what a crash (a node's reboot) left in the image's
// filesystem, as a boot's fsck would; what it cannot repair unattended
// is an error naming the image.
func check(img string) error {
	out, err := exec.Command("e2fsck", "-p", img).CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() >= 1 && exit.ExitCode() < 4 {
		return nil // 1: errors corrected; 2: corrected, reboot advised (a root filesystem)
	}
	if err != nil {
		return fmt.Errorf("%w: e2fsck -p %s: %v: %s (repair it by hand with e2fsck)", fault.Unavailable, img, err, out)
	}
	return nil
}

// preallocate allocates every block of the size bytes of img (mode 0:
// holes are filled, allocated blocks kept). A disk without room is
// fault.Exhausted; a filesystem that cannot preallocate leaves the image
// sparse.
func preallocate(img string, size int64) error {
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("%w: image %s: %v", fault.Unavailable, img, err)
	}
	defer f.Close()
	for {
		err = unix.Fallocate(int(f.Fd()), 0, 0, size)
		if !errors.Is(err, unix.EINTR) { // tmpfs gives up on a pending signal
			break
		}
	}
	switch {
	case err == nil, errors.Is(err, unix.EOPNOTSUPP):
		return nil
	case errors.Is(err, unix.ENOSPC):
		return fmt.Errorf("%w: allocating the %d-byte image %s: %v", fault.Exhausted, size, img, err)
	}
	return fmt.Errorf("%w: allocating the %d-byte image %s: %v", fault.Unavailable, size, img, err)
}

// isEmpty reports whether dir has no entries.
func isEmpty(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if len(names) > 0 {
		return false, nil
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	return true, nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
