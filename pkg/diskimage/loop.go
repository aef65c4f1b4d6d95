package diskimage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// attachLoop binds img to a free loop device and returns the device open:
// the caller mounts it, then closes it. The device clears itself at its
// last close or unmount (LO_FLAGS_AUTOCLEAR), and reads the image with
// direct I/O where the image's filesystem allows it (one page cache, the
// ext4 inside's, instead of two).
//
// A device another attach takes between our asking for a free one and
// binding it answers EBUSY: we ask again. In a container whose /dev was
// filled when it started, a device the kernel made since has no node yet:
// we make it.
func attachLoop(img string) (*os.File, error) {
	backing, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer backing.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer ctl.Close()
	for range attachTries {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("LOOP_CTL_GET_FREE: %w", err)
		}
		dev, err := openLoop(n)
		if err != nil {
			return nil, err
		}
		err = configure(dev, backing, unix.LO_FLAGS_AUTOCLEAR|unix.LO_FLAGS_DIRECT_IO)
		if err != nil && !errors.Is(err, unix.EBUSY) {
			// No direct I/O on the image's filesystem (tmpfs).
			err = configure(dev, backing, unix.LO_FLAGS_AUTOCLEAR)
		}
		if err == nil {
			noDiscards(n)
			return dev, nil
		}
		dev.Close()
		if !errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("LOOP_CONFIGURE %s: %w", dev.Name(), err)
		}
	}
	return nil, fmt.Errorf("no free loop device after %d tries", attachTries)
}

// attachTries bounds how often attachLoop asks for a free device: each
// failed try lost a race with another attach, which took a device.
const attachTries = 64

// openLoop opens /dev/loopN, making its node when it is missing.
func openLoop(n int) (*os.File, error) {
	name, err := loopNode(n)
	if err != nil {
		return nil, err
	}
	return os.OpenFile(name, os.O_RDWR, 0)
}

// loopNode returns /dev/loopN, making the node, with the device number
// the kernel gives it (/sys/block/loopN/dev), when it is missing.
func loopNode(n int) (string, error) {
	name := fmt.Sprintf("/dev/loop%d", n)
	if _, err := os.Stat(name); !errors.Is(err, os.ErrNotExist) {
		return name, err
	}
	b, err := os.ReadFile(fmt.Sprintf("/sys/block/loop%d/dev", n))
	if err != nil {
		return "", err
	}
	var major, minor uint32
	if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d:%d", &major, &minor); err != nil {
		return "", fmt.Errorf("device number of loop%d %q: %w", n, b, err)
	}
	if err := unix.Mknod(name, unix.S_IFBLK|0o600, int(unix.Mkdev(major, minor))); err != nil && !errors.Is(err, unix.EEXIST) {
		return "", fmt.Errorf("making %s: %w", name, err)
	}
	return name, nil
}

// heldBy returns, open, the loop device that holds img, if one does: the
// device of a mount our unmount did not end (another mount namespace keeps
// a copy of it). Devices are matched by the backing file's device and
// inode, which name it in every mount namespace; the path the kernel
// shows is the one the attaching process saw.
func heldBy(img string) *os.File {
	var st unix.Stat_t
	if err := unix.Stat(img, &st); err != nil {
		return nil
	}
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range files {
		var n int
		if _, err := fmt.Sscanf(filepath.Base(filepath.Dir(filepath.Dir(f))), "loop%d", &n); err != nil {
			continue
		}
		dev, err := openLoop(n)
		if err != nil {
			continue
		}
		info, err := unix.IoctlLoopGetStatus64(int(dev.Fd()))
		if err == nil && info.Device == uint64(st.Dev) && info.Inode == st.Ino {
			return dev
		}
		dev.Close()
	}
	return nil
}

// noDiscards turns discards off on loopN, so a trim of the node's
// filesystems (fstrim) does not punch holes into the preallocated image.
// Best effort: a read-only /sys leaves them on.
func noDiscards(n int) {
	_ = os.WriteFile(fmt.Sprintf("/sys/block/loop%d/queue/discard_max_bytes", n), []byte("0"), 0)
}

// configure binds backing to dev with flags.
func configure(dev, backing *os.File, flags uint32) error {
	var c unix.LoopConfig
	c.Fd = uint32(backing.Fd())
	c.Info.Flags = flags
	copy(c.Info.File_name[:len(c.Info.File_name)-1], backing.Name())
	return unix.IoctlLoopConfigure(int(dev.Fd()), &c)
}
