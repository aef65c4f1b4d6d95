package diskimage

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/bucket-csi/bucket-csi/pkg/mountpoint"
)

// needRoot fails (never skips) without what the package needs: root and
// mkfs.ext4. CI runs as root.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("diskimage tests need root (loop devices and mounts)")
	}
}

// TestImageCapsWhatTheDirectoryTakes: a 32 MiB image on a directory takes
// its 32 MiB of the disk below when it is made (so a write its filesystem
// accepts never meets a full disk later) and writes until its filesystem
// is full, then ENOSPC; detaching and attaching again (after an e2fsck)
// keeps the files; Remove frees the loop device and leaves nothing.
func TestImageCapsWhatTheDirectoryTakes(t *testing.T) {
	needRoot(t)
	for _, below := range []string{"disk", "tmpfs"} {
		t.Run(below, func(t *testing.T) {
			root := t.TempDir()
			if below == "tmpfs" { // no direct I/O there: the loop falls back
				if err := unix.Mount("tmpfs", root, "tmpfs", 0, "size=64m"); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = unix.Unmount(root, unix.MNT_DETACH) })
			}
			img, dir := filepath.Join(root, "v.img"), filepath.Join(root, "v")
			t.Cleanup(func() { _ = Remove(img, dir) })
			if err := Attach(img, dir, 32<<20); err != nil {
				t.Fatal(err)
			}
			if err := Attach(img, dir, 32<<20); err != nil {
				t.Fatalf("a second Attach: %v", err)
			}
			m, err := mountpoint.Get(dir)
			if err != nil || m == nil || m.FSType != "ext4" || !strings.HasPrefix(m.Source, "/dev/loop") {
				t.Fatalf("mount at %s: %+v, %v", dir, m, err)
			}
			if opts := superOptions(t, dir); !slices.Contains(strings.Split(opts, ","), "noauto_da_alloc") {
				t.Fatalf("the image is mounted with %q; want noauto_da_alloc (no flush at the close of a file truncated to nothing)", opts)
			}
			// Files of a block or more each run out of blocks first.
			var sf unix.Statfs_t
			if err := unix.Statfs(dir, &sf); err != nil || sf.Bsize != blockSize || sf.Files < sf.Blocks {
				t.Fatalf("the image's filesystem: %d-byte blocks, %d inodes for %d blocks (err %v); want 4 KiB blocks, an inode per block", sf.Bsize, sf.Files, sf.Blocks, err)
			}
			written, werr := fill(filepath.Join(dir, "big"), 64<<20)
			if !errors.Is(werr, syscall.ENOSPC) {
				t.Fatalf("writing 64 MiB into a 32 MiB image: %d bytes, err %v; want ENOSPC", written, werr)
			}
			if written < 16<<20 || written > 32<<20 {
				t.Fatalf("the image took %d bytes before ENOSPC; want between 16 and 32 MiB", written)
			}
			var st unix.Stat_t
			if err := unix.Stat(img, &st); err != nil {
				t.Fatal(err)
			}
			if st.Size != 32<<20 || st.Blocks*512 < 32<<20 {
				t.Fatalf("the image is %d bytes and takes %d of the disk; want 32 MiB preallocated", st.Size, st.Blocks*512)
			}
			if err := os.Remove(filepath.Join(dir, "big")); err != nil {
				t.Fatal(err)
			}
			// A trim of the node's filesystems must not hand the
			// freed blocks back: the image stays preallocated.
			out, _ := exec.Command("fstrim", "-v", dir).CombinedOutput()
			if err := unix.Stat(img, &st); err != nil {
				t.Fatal(err)
			}
			if st.Blocks*512 < 32<<20 {
				t.Fatalf("after fstrim (%s) the image takes %d bytes of the disk; want its 32 MiB", strings.TrimSpace(string(out)), st.Blocks*512)
			}
			if err := os.WriteFile(filepath.Join(dir, "kept"), []byte("kept"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := Detach(dir); err != nil {
				t.Fatal(err)
			}
			if err := Attach(img, dir, 32<<20); err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(filepath.Join(dir, "kept")); err != nil || string(b) != "kept" {
				t.Fatalf("after detach and attach: %q, %v", b, err)
			}
			loop := m.Source
			if err := Remove(img, dir); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{img, dir} {
				if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("%s left after Remove: %v", p, err)
				}
			}
			if b, err := os.ReadFile("/sys/block/" + filepath.Base(loop) + "/loop/backing_file"); err == nil && strings.Contains(string(b), img) {
				t.Fatalf("%s still holds %s after Remove", loop, img)
			}
		})
	}
}

// superOptions returns the filesystem options of the mount at dir, as
// /proc/self/mountinfo lists them (the last field).
func superOptions(t *testing.T, dir string) string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	opts := ""
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 5 && f[4] == dir {
			opts = f[len(f)-1] // the last mount at dir is the one seen
		}
	}
	if opts == "" {
		t.Fatalf("no mount at %s in /proc/self/mountinfo", dir)
	}
	return opts
}

// TestAttachMountsAHeldImageAgain: when a mount of the image outlives the
// unmount of its directory (another mount namespace keeps a copy; here a
// bind mount), Attach mounts the loop device that still holds it, never a
// second device over the same image, and sees the same files.
func TestAttachMountsAHeldImageAgain(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	img, dir, other := filepath.Join(root, "v.img"), filepath.Join(root, "v"), filepath.Join(root, "other")
	t.Cleanup(func() { _ = unix.Unmount(other, unix.MNT_DETACH); _ = Remove(img, dir) })
	if err := Attach(img, dir, 32<<20); err != nil {
		t.Fatal(err)
	}
	first, _ := mountpoint.Get(dir)
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(other, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(dir, other, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	if err := Detach(dir); err != nil {
		t.Fatal(err)
	}
	if dev := heldBy(img); dev == nil || dev.Name() != first.Source {
		t.Fatalf("heldBy = %v; want %s", dev, first.Source)
	} else {
		dev.Close()
	}
	if err := Attach(img, dir, 32<<20); err != nil {
		t.Fatal(err)
	}
	again, _ := mountpoint.Get(dir)
	if again == nil || again.Source != first.Source {
		t.Fatalf("attached again on %+v, want the device still holding the image, %s", again, first.Source)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "f")); err != nil || string(b) != "one" {
		t.Fatalf("after the attach: %q, %v", b, err)
	}
}

// TestImageLeavesMostOfItUsable: ext4's metadata (inode tables, journal)
// and its reserve for delayed allocation leave at least 87% of a 128 MiB
// image free (88.5% seen) and 90% of a 1 GiB one (90.4%); with mke2fs's
// journal for blocks of 4 KiB (16 and 32 MiB) they left 79% and 88.8%.
func TestImageLeavesMostOfItUsable(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		size    int64
		percent int64
	}{{128 << 20, 87}, {1 << 30, 90}} {
		root := t.TempDir()
		img, dir := filepath.Join(root, "v.img"), filepath.Join(root, "v")
		if err := Attach(img, dir, tc.size); err != nil {
			t.Fatal(err)
		}
		var sf unix.Statfs_t
		err := unix.Statfs(dir, &sf)
		if rerr := Remove(img, dir); err == nil {
			err = rerr
		}
		if err != nil {
			t.Fatal(err)
		}
		usable := int64(sf.Bavail) * sf.Bsize
		t.Logf("%d MiB image: %.1f MiB free", tc.size>>20, float64(usable)/(1<<20))
		if usable < tc.size*tc.percent/100 {
			t.Errorf("a %d MiB image leaves %.1f MiB free; want at least %d%%", tc.size>>20, float64(usable)/(1<<20), tc.percent)
		}
	}
}

// TestAttachLeavesFilesAlone: a directory that already holds files (a
// cache from before images) is never mounted over: without an image it is
// ErrOutsideImage, beside an unmounted image it is an error, and its files
// stay.
func TestAttachLeavesFilesAlone(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	img, dir := filepath.Join(root, "v.img"), filepath.Join(root, "v")
	t.Cleanup(func() { _ = Remove(img, dir) })
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pending"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Attach(img, dir, 32<<20); !errors.Is(err, ErrOutsideImage) {
		t.Fatalf("Attach over files without an image: %v; want ErrOutsideImage", err)
	}
	if _, err := os.Stat(img); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an image was made: %v", err)
	}
	if err := create(img, 32<<20); err != nil {
		t.Fatal(err)
	}
	if err := Attach(img, dir, 32<<20); err == nil || errors.Is(err, ErrOutsideImage) {
		t.Fatalf("Attach over files beside an image: %v; want an error", err)
	}
	if m, _ := mountpoint.Mounted(dir); m {
		t.Fatal("the directory was mounted over")
	}
	if b, err := os.ReadFile(filepath.Join(dir, "pending")); err != nil || string(b) != "x" {
		t.Fatalf("the file is gone: %v", err)
	}
}

// fill writes up to n bytes to path and returns how many it wrote and the
// error that stopped it (a full filesystem may answer at the write or at
// the fsync).
func fill(path string, n int) (int, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := bytes.Repeat([]byte{1}, 1<<20)
	written := 0
	for written < n {
		k, err := f.Write(buf)
		written += k
		if err != nil {
			return written, err
		}
	}
	return written, f.Sync()
}
