// Package mountpoint answers "is this path a mount point" from
// /proc/self/mountinfo (never by stat, which hangs on a stuck FUSE server)
// and makes and removes the bind mounts that publish a staged volume.
package mountpoint

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
)

// Info describes one mount at a path.
type Info struct {
	FSType string // e.g. "fuse.bucket-csi"
	Source string
	Major  int // device major
	Minor  int // device minor: a FUSE mount's connection number
	// Root is the directory of the filesystem the mount shows: a bind of
	// a mount shows the same device and root as the mount.
	Root string
	// ReadOnly is set when the mount point itself is read-only (a
	// read-only bind), whatever its filesystem allows.
	ReadOnly bool
}

// Get returns the topmost mount at path, or nil when path is not a mount
// point. path is cleaned but not resolved: callers pass canonical paths.
func Get(path string) (*Info, error) {
	path = filepath.Clean(path)
	mounts, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(path))
	if err != nil {
		return nil, fmt.Errorf("reading mountinfo: %w", err)
	}
	if len(mounts) == 0 {
		return nil, nil
	}
	m := mounts[len(mounts)-1]
	ro := slices.Contains(strings.Split(m.Options, ","), "ro")
	return &Info{FSType: m.FSType, Source: m.Source, Major: m.Major, Minor: m.Minor, Root: m.Root, ReadOnly: ro}, nil
}

// Mounted reports whether path is a mount point.
func Mounted(path string) (bool, error) {
	m, err := Get(path)
	return m != nil, err
}

// Bind bind-mounts src on dst, nosuid and nodev whatever src's mount is,
// and read-only when ro or when src is a read-only mount point (a
// read-only COPY stage). (A bind remount sets the mount's flags to
// exactly those it is given: one with MS_RDONLY alone clears nosuid and
// nodev, one without it makes a bind of a read-only mount writable.)
// src's mount is read from mountinfo, never asked (statfs would wait on
// a hung FUSE server).
func Bind(src, dst string, ro bool) error {
	m, err := Get(src)
	if err != nil {
		return fmt.Errorf("%w: %v", fault.Unavailable, err)
	}
	ro = ro || m != nil && m.ReadOnly
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("%w: bind-mounting %s on %s: %v", fault.Unavailable, src, dst, err)
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_NOSUID | unix.MS_NODEV)
	if ro {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount("", dst, "", flags, ""); err != nil {
		_ = unix.Unmount(dst, unix.MNT_DETACH)
		return fmt.Errorf("%w: setting the flags of %s (nosuid, nodev, read-only %v): %v", fault.Unavailable, dst, ro, err)
	}
	return nil
}

// unmountTimeout bounds one umount(2): a FUSE server that does not answer
// must not hang the CSI call that unmounts it.
const unmountTimeout = 5 * time.Second

// Unmount unmounts every mount stacked on path; a path that is not mounted
// is not an error. A busy mount is fault.Pending (files are still open). An
// unmount that hangs (a stopped or deadlocked FUSE server) is bounded: the
// FUSE connection is aborted and the mount detached.
func Unmount(path string) error {
	for i := 0; i < 8; i++ {
		m, err := Get(path)
		if err != nil || m == nil {
			return err
		}
		done := make(chan error, 1)
		go func() { done <- unix.Unmount(path, 0) }()
		select {
		case err = <-done:
		case <-time.After(unmountTimeout):
			abortFUSE(m)
			err = unix.Unmount(path, unix.MNT_DETACH)
		}
		switch {
		case err == nil, errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
		case errors.Is(err, unix.EBUSY):
			return fmt.Errorf("%w: %s is busy (files still open); retry once they are closed", fault.Pending, path)
		default:
			return fmt.Errorf("%w: unmounting %s: %v", fault.Unavailable, path, err)
		}
	}
	return fmt.Errorf("%w: %s still mounted after repeated unmounts", fault.Unavailable, path)
}

// Detach unmounts path like Unmount but detaches a busy mount lazily
// instead of failing. Use it only for bind mounts whose data path stays
// served elsewhere (a pod's target path: the staging mount keeps serving
// files still open in a terminating pod).
func Detach(path string) error {
	err := Unmount(path)
	if errors.Is(err, fault.Pending) {
		if derr := unix.Unmount(path, unix.MNT_DETACH); derr != nil && !errors.Is(derr, unix.EINVAL) {
			return fmt.Errorf("%w: detaching %s: %v", fault.Unavailable, path, derr)
		}
		return nil
	}
	return err
}

// abortFUSE aborts the kernel connection of a FUSE mount, failing every
// request that waits on its server.
func abortFUSE(m *Info) {
	if strings.HasPrefix(m.FSType, "fuse") {
		_ = os.WriteFile(fmt.Sprintf("/sys/fs/fuse/connections/%d/abort", m.Minor), []byte("1"), 0o200)
	}
}

// Below returns the mount points strictly below dir.
func Below(dir string) ([]string, error) {
	dir = filepath.Clean(dir)
	all, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return nil, fmt.Errorf("reading mountinfo: %w", err)
	}
	var out []string
	for _, m := range all {
		if m.Mountpoint != dir {
			out = append(out, m.Mountpoint)
		}
	}
	return out, nil
}
