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
// through a writable COPY volume ran as its owner in a read-only publish);
// and a bind of a read-only mount (a read-only COPY stage) stays
// read-only when asked for read-write. Needs root (mounts), which CI has:
// it fails, never skips, without.
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
	for _, c := range []struct {
		from, to string
		ro, want bool
	}{{"src", "rw", false, false}, {"src", "ro", true, true}, {"ro", "rw-of-ro", false, true}} {
		dst := filepath.Join(root, c.to)
		if err := os.Mkdir(dst, 0o755); err != nil {
			t.Fatal(err)
		}
		ro := c.want
		if err := Bind(filepath.Join(root, c.from), dst, c.ro); err != nil {
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
				t.Errorf("bind of %s on %s (read-only %v) has options %v, want %s", c.from, c.to, c.ro, opts, want)
			}
		}
		if slices.Contains(opts, "ro") != ro {
			t.Errorf("bind of %s on %s (read-only %v) has options %v, want read-only %v", c.from, c.to, c.ro, opts, ro)
		}
	}
}
