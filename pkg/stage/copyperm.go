package stage

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/bucket-csi/bucket-csi/pkg/bucket"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// The files of a COPY volume are plain local files, so the kernel enforces
// their owner and mode as on any disk. presentCopy sets them from the
// volume's mount flags at the end of every copy job, before the copy is
// bind-mounted: a kept copy (--keep-copies) holds files the copier rewrote and
// files whose mode a pod changed, and the flags may differ from last time.

// copyPerms is what every directory and regular file of a copy gets.
type copyPerms struct {
	uid, gid  int
	file, dir uint32
}

// walkBatch is how many directory entries the walk holds per directory
// level: memory stays bounded however many files a directory has.
const walkBatch = 512

// fsImmutableFL is FS_IMMUTABLE_FL of linux/fs.h (chattr +i).
const fsImmutableFL = 0x10

// presentCopy gives data (the copy's root) and every directory and regular
// file below it the uid, gid and modes of flags (volume.FileMode,
// volume.DirMode). Symlinks and other file types are left alone. The walk
// goes through directory file descriptors (openat with O_NOFOLLOW, fchown
// and fchmod on the opened file), so a path a pod swaps for a symlink while
// it runs is never followed out of the copy.
//
// With guard (the volume shows the bucket root) it then reserves
// bucket.MetaDir at the root, see guardMeta; a filesystem without the
// immutable attribute is logged, and the copy is published with a
// root-owned read-only directory there instead (writes in a COPY volume
// never reach the bucket either way).
func presentCopy(data string, flags volume.MountFlags, guard bool, log *slog.Logger) error {
	if guard {
		if err := unguardMeta(data); err != nil {
			return err
		}
	}
	p := copyPerms{uid: int(flags.UID), gid: int(flags.GID), file: uint32(volume.FileMode(flags.Umask, flags.Exec)), dir: uint32(volume.DirMode(flags.Umask))}
	fd, err := unix.Open(data, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening the copy %s: %w", data, err)
	}
	if err := fixOpened(fd, p.dir, p); err != nil {
		unix.Close(fd)
		return fmt.Errorf("setting the owner of %s: %w", data, err)
	}
	if err := fixTree(fd, data, p); err != nil {
		return err
	}
	if !guard {
		return nil
	}
	err = guardMeta(data)
	if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
		log.Warn("the copy's filesystem has no immutable attribute: its .bucket-csi directory is only root-owned and read-only", "path", data, "err", err)
		return nil
	}
	return err
}

// fixTree fixes every entry of the directory open as dirfd (named name,
// for errors), recursively, and closes dirfd.
func fixTree(dirfd int, name string, p copyPerms) error {
	dir := os.NewFile(uintptr(dirfd), name)
	defer dir.Close()
	for {
		ents, err := dir.ReadDir(walkBatch)
		for _, e := range ents {
			if ferr := fixEntry(dirfd, filepath.Join(name, e.Name()), e.Name(), e.Type(), p); ferr != nil {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) || (err == nil && len(ents) == 0) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("listing %s: %w", name, err)
		}
	}
}

// fixEntry fixes one entry of dirfd. An entry that is gone or changed type
// since it was listed is left alone.
func fixEntry(dirfd int, path, name string, typ os.FileMode, p copyPerms) error {
	var flags int
	var mode uint32
	switch {
	case typ.IsDir():
		flags, mode = unix.O_DIRECTORY, p.dir
	case typ.IsRegular():
		var st unix.Stat_t
		if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return ignoreGone(err, path)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG || (int(st.Uid) == p.uid && int(st.Gid) == p.gid && st.Mode&0o7777 == p.file) {
			return nil
		}
		// By name in the pinned directory, never following a symlink.
		if err := unix.Fchownat(dirfd, name, p.uid, p.gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return ignoreGone(err, path)
		}
		err := unix.Fchmodat(dirfd, name, p.file, unix.AT_SYMLINK_NOFOLLOW)
		if !errors.Is(err, unix.EOPNOTSUPP) {
			return ignoreGone(err, path)
		}
		// No fchmodat2 (Linux < 6.6), or the name became a symlink.
		flags, mode = unix.O_NONBLOCK|unix.O_NOCTTY, p.file
	default:
		return nil
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|flags, 0)
	if err != nil {
		return ignoreGone(err, path)
	}
	if err := fixOpened(fd, mode, p); err != nil {
		unix.Close(fd)
		return fmt.Errorf("setting the owner of %s: %w", path, err)
	}
	if typ.IsDir() {
		return fixTree(fd, path, p)
	}
	return unix.Close(fd)
}

// fixOpened sets the owner and mode of the open file fd when they differ.
func fixOpened(fd int, mode uint32, p copyPerms) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if int(st.Uid) != p.uid || int(st.Gid) != p.gid {
		if err := unix.Fchown(fd, p.uid, p.gid); err != nil {
			return err
		}
	}
	if st.Mode&0o7777 != mode || int(st.Uid) != p.uid || int(st.Gid) != p.gid {
		return unix.Fchmod(fd, mode)
	}
	return nil
}

// ignoreGone treats an entry that vanished or became a symlink or another
// type since it was listed as nothing to do.
func ignoreGone(err error, path string) error {
	if err == nil || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return nil
	}
	return fmt.Errorf("setting the owner of %s: %w", path, err)
}

// guardMeta replaces whatever is at data/.bucket-csi with an empty
// directory owned by root, mode 0555, with the immutable attribute: every
// create, mkdir, rename (to or from), unlink, rmdir, chmod and chown of it
// or in it then fails with EPERM, for root too. The copier never sees it:
// unguardMeta removes it before a copy runs.
func guardMeta(data string) error {
	if err := unguardMeta(data); err != nil {
		return err
	}
	p := filepath.Join(data, bucket.MetaDir)
	if err := os.Mkdir(p, 0o555); err != nil {
		return err
	}
	if err := os.Chmod(p, 0o555); err != nil {
		return err
	}
	return setImmutable(p, true)
}

// unguardMeta removes data/.bucket-csi, clearing its immutable attribute
// first. Nothing there is a copy of an object (the copier leaves the
// driver's own objects out), so it is safe on any copy of a bucket root.
func unguardMeta(data string) error {
	p := filepath.Join(data, bucket.MetaDir)
	fi, err := os.Lstat(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		if err := setImmutable(p, false); err != nil && !errors.Is(err, unix.ENOTTY) && !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("clearing the immutable attribute of %s: %w", p, err)
		}
	}
	return os.RemoveAll(p)
}

// setImmutable sets or clears the immutable attribute of directory p.
func setImmutable(p string, on bool) error {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	attrs, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err != nil {
		return err
	}
	want := attrs &^ fsImmutableFL
	if on {
		want |= fsImmutableFL
	}
	if want == attrs {
		return nil
	}
	return unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(want))
}

// RemoveCopy removes a copy directory (its data/ and manifest), clearing
// the metadata guard first.
func RemoveCopy(dir string) error {
	if err := unguardMeta(filepath.Join(dir, "data")); err != nil {
		return err
	}
	return os.RemoveAll(dir)
}

// ReleaseGuards clears the metadata guard of every copy below root (the
// node's copies directory, <state-dir>/copies), so that the directory can
// be deleted with ordinary tools. Copies kept by --keep-copies are guarded
// between stages.
func ReleaseGuards(root string) error {
	dirs, err := filepath.Glob(filepath.Join(root, "*", "data"))
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range dirs {
		errs = append(errs, unguardMeta(d))
	}
	return errors.Join(errs...)
}
