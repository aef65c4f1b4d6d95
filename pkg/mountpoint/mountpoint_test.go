package mountpoint

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// TestBindIsNosuidNodev: a bind is nosuid and nodev, read-only or not,
// also of a directory on a mount that allows both (a read-only bind
// remount made with MS_RDONLY alone cleared them, so a setuid file written
// through a writable COPY volume ran as its owner in a read-only publish).
// Needs root (mounts), which CI has: it fails, never skips, without.
func TestBindIsNosuidNodev(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("mountpoint tests need root (mounts)")
	}
	root := t.TempDir()
	src := filepath.Join(root, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	// A source mount with suid and dev allowed.
	if err := unix.Mount("tmpfs", src, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(src, unix.MNT_DETACH) })
	for _, ro := range []bool{false, true} {
		dst := filepath.Join(root, "dst")
		if ro {
			dst += "-ro"
		}
		if err := os.Mkdir(dst, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := Bind(src, dst, ro); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = unix.Unmount(dst, unix.MNT_DETACH) })
		mounts, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(dst))
		if err != nil || len(mounts) == 0 {
			t.Fatalf("%s not mounted: %v", dst, err)
		}
		opts := strings.Split(mounts[len(mounts)-1].Options, ",")
		for _, want := range []string{"nosuid", "nodev"} {
			if !slices.Contains(opts, want) {
				t.Errorf("bind (read-only %v) has options %v, want %s", ro, opts, want)
			}
		}
		if slices.Contains(opts, "ro") != ro {
			t.Errorf("bind (read-only %v) has options %v", ro, opts)
		}
	}
}
