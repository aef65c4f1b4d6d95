package stage

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// requireRoot fails in CI and skips elsewhere without root (chown and the
// immutable attribute need it).
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("required for this test and missing in CI: root")
	}
	t.Skip("skipping outside CI: root")
}

// TestPresentCopy: every directory and regular file of a copy gets the
// volume's owner and modes, symlinks are not followed (the file they point
// to, outside the copy, keeps its owner and mode), and the metadata
// directory is reserved: creating, renaming and deleting in it or of it
// fail with EPERM, for root too; unguardMeta lifts it. On the disk of the
// tests and on tmpfs.
func TestPresentCopy(t *testing.T) {
	requireRoot(t)
	tmpfs := t.TempDir()
	if err := unix.Mount("tmpfs", tmpfs, "tmpfs", 0, "size=16m"); err != nil {
		t.Fatalf("mounting tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(tmpfs, unix.MNT_DETACH) })
	for name, base := range map[string]string{"disk": t.TempDir(), "tmpfs": tmpfs} {
		t.Run(name, func(t *testing.T) {
			outside := filepath.Join(base, "outside.txt")
			dir := filepath.Join(base, "copy")
			data := filepath.Join(dir, "data")
			if err := os.MkdirAll(filepath.Join(data, "a", "b"), 0o755); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{outside, filepath.Join(data, "top.txt"), filepath.Join(data, "a", "b", "deep.txt")} {
				if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Symlink(outside, filepath.Join(data, "a", "link")); err != nil {
				t.Fatal(err)
			}
			// Something a pod left where the guard goes.
			if err := os.MkdirAll(filepath.Join(data, ".bucket-csi", "volumes"), 0o777); err != nil {
				t.Fatal(err)
			}
			flags := volume.MountFlags{UID: 1000, GID: 3000, Umask: 0o007}
			if err := presentCopy(data, flags, true, slog.Default()); err != nil {
				t.Fatal(err)
			}
			for p, perm := range map[string]os.FileMode{data: 0o770, filepath.Join(data, "a"): 0o770, filepath.Join(data, "a", "b"): 0o770,
				filepath.Join(data, "top.txt"): 0o660, filepath.Join(data, "a", "b", "deep.txt"): 0o660} {
				owned(t, p, 1000, 3000, perm)
			}
			owned(t, outside, 0, 0, 0o644)
			meta := filepath.Join(data, ".bucket-csi")
			owned(t, meta, 0, 0, 0o555)
			for what, err := range map[string]error{
				"mkdir inside":  unix.Mkdir(filepath.Join(meta, "volumes"), 0o755),
				"create inside": unix.Mknod(filepath.Join(meta, "owner.json"), unix.S_IFREG|0o644, 0),
				"rename into":   unix.Rename(filepath.Join(data, "top.txt"), filepath.Join(meta, "owner.json")),
				"rename onto":   unix.Rename(filepath.Join(data, "a"), meta),
				"rename away":   unix.Rename(meta, filepath.Join(data, "moved")),
				"rmdir":         unix.Rmdir(meta),
				"chmod":         unix.Chmod(meta, 0o777),
			} {
				if !errors.Is(err, syscall.EPERM) {
					t.Errorf("%s of the guard: %v, want EPERM", what, err)
				}
			}
			// A second stage with other flags changes everything again.
			if err := presentCopy(data, volume.MountFlags{UID: 7, GID: 8, Umask: 0o022}, true, slog.Default()); err != nil {
				t.Fatal(err)
			}
			owned(t, filepath.Join(data, "a", "b", "deep.txt"), 7, 8, 0o644)
			owned(t, filepath.Join(data, "a"), 7, 8, 0o755)
			if err := RemoveCopy(dir); err != nil {
				t.Fatalf("removing a guarded copy: %v", err)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("copy left: %v", err)
			}
		})
	}
}

func owned(t *testing.T, p string, uid, gid uint32, perm os.FileMode) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != uid || st.Gid != gid || os.FileMode(st.Mode&0o777) != perm {
		t.Errorf("%s: %d:%d %v, want %d:%d %v", p, st.Uid, st.Gid, os.FileMode(st.Mode&0o777), uid, gid, perm)
	}
}
