package test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// TestExclusiveNamesKeepOthersObjects: rclone's VFS ignores the flags of
// renameat2, and creates a file for O_EXCL or mknod wherever its listing
// shows no name, so the driver answers them. A rename without replacing,
// an exclusive create or a mknod onto an object written outside, which
// neither the kernel nor rclone's directory listing knows yet, answers
// EEXIST and leaves that object as it was (before, it was replaced), and
// shows it; so does a directory renamed without replacing onto keys
// written outside below the name; a
// touch keeps such an object and an append appends to it (MOUNT, which
// cannot append, refuses; before, both replaced it); an exchange of two
// files answers EINVAL (rclone would replace one); a rename without
// replacing, or an exclusive create, of a free name goes ahead. MOUNT and
// MOUNT_CACHED.
func TestExclusiveNamesKeepOthersObjects(t *testing.T) {
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t)
	for _, mode := range []string{"MOUNT", "MOUNT_CACHED"} {
		t.Run(mode, func(t *testing.T) {
			vol, err := c.Controller.CreateVolume(context.Background(), createReq("pvc-rename-"+mode, map[string]string{"mode": mode}, s3.Secrets()))
			if err != nil {
				t.Fatal(err)
			}
			id, bucket := vol.GetVolume().GetVolumeId(), vol.GetVolume().GetVolumeContext()["bucket"]
			staging, target := podPaths(t, drv)
			publish(t, c, id, staging, target, s3.Secrets(), false, "dir-cache-time=10m")
			defer unpublish(t, c, id, staging, target)

			mine, theirs, other := filepath.Join(target, "mine.txt"), filepath.Join(target, "theirs.txt"), filepath.Join(target, "other.txt")
			second, dirA := filepath.Join(target, "second.txt"), filepath.Join(target, "dir-a")
			if err := os.Mkdir(dirA, 0o755); err != nil {
				t.Fatal(err)
			}
			for p, data := range map[string]string{mine: "mine", second: "second", filepath.Join(dirA, "x"): "mine below"} {
				if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := os.ReadDir(target); err != nil {
				t.Fatal(err)
			}
			putObject(t, s3, bucket, "theirs.txt", []byte("theirs"))
			putObject(t, s3, bucket, "lock", []byte("held"))
			putObject(t, s3, bucket, "node", []byte("a node"))
			putObject(t, s3, bucket, "log.txt", []byte("old\n"))
			putObject(t, s3, bucket, "touched", []byte("kept"))
			putObject(t, s3, bucket, "dir-b/x", []byte("below"))
			for _, p := range []string{theirs, filepath.Join(target, "lock"), filepath.Join(target, "node"), filepath.Join(target, "log.txt"), filepath.Join(target, "touched"), filepath.Join(target, "dir-b")} {
				if _, err := os.Stat(p); !errors.Is(err, syscall.ENOENT) {
					t.Fatalf("stat of an object written outside after the listing was cached: %v, want ENOENT (the case under test)", err)
				}
			}
			if f, err := os.OpenFile(filepath.Join(target, "lock"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644); !errors.Is(err, syscall.EEXIST) {
				if err == nil {
					f.Close()
				}
				t.Errorf("exclusive create of an object written outside: %v, want EEXIST", err)
			}
			if err := unix.Mknod(filepath.Join(target, "node"), unix.S_IFREG|0o644, 0); !errors.Is(err, syscall.EEXIST) {
				t.Errorf("mknod of an object written outside: %v, want EEXIST", err)
			}

			// touch: an open-or-create, closed unwritten.
			if f, err := os.OpenFile(filepath.Join(target, "touched"), os.O_WRONLY|os.O_CREATE, 0o644); err == nil {
				f.Close()
			} else if mode == "MOUNT_CACHED" {
				t.Errorf("touch of an object written outside: %v", err)
			}
			// An append: MOUNT_CACHED appends to the object; MOUNT, which
			// cannot append to a file, fails the write (as for a listed
			// one) and leaves the object as it was.
			if err := appendTo(filepath.Join(target, "log.txt"), "new\n"); err != nil && mode == "MOUNT_CACHED" {
				t.Errorf("append to an object written outside: %v", err)
			}
			if err := unix.Renameat2(unix.AT_FDCWD, mine, unix.AT_FDCWD, theirs, unix.RENAME_NOREPLACE); !errors.Is(err, syscall.EEXIST) {
				t.Errorf("rename without replacing onto an object written outside: %v, want EEXIST", err)
			}
			if _, err := os.Stat(theirs); err != nil {
				t.Errorf("an object the refused rename found is not shown: %v", err)
			}
			if err := unix.Renameat2(unix.AT_FDCWD, dirA, unix.AT_FDCWD, filepath.Join(target, "dir-b"), unix.RENAME_NOREPLACE); !errors.Is(err, syscall.EEXIST) {
				t.Errorf("rename of a directory without replacing onto keys written outside below the name: %v, want EEXIST", err)
			}
			if err := unix.Renameat2(unix.AT_FDCWD, mine, unix.AT_FDCWD, second, unix.RENAME_EXCHANGE); !errors.Is(err, syscall.EINVAL) {
				t.Errorf("rename exchanging two files: %v, want EINVAL", err)
			}
			if got, err := os.ReadFile(second); err != nil || string(got) != "second" {
				t.Fatalf("the refused exchange's target holds %q (%v)", got, err)
			}
			for key, want := range map[string]string{"theirs.txt": "theirs", "lock": "held", "node": "a node", "touched": "kept", "dir-b/x": "below"} {
				if got, err := s3.ReadObject(t, bucket, key); err != nil || string(got) != want {
					t.Fatalf("the object %s written outside holds %q (%v), want %q", key, got, err, want)
				}
			}
			if got, err := os.ReadFile(mine); err != nil || string(got) != "mine" {
				t.Fatalf("the refused rename's source holds %q (%v)", got, err)
			}

			if err := unix.Renameat2(unix.AT_FDCWD, mine, unix.AT_FDCWD, other, unix.RENAME_NOREPLACE); err != nil {
				t.Fatalf("rename without replacing onto a free name: %v", err)
			}
			f, err := os.OpenFile(filepath.Join(target, "mylock"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if err != nil {
				t.Fatalf("exclusive create of a free name: %v", err)
			}
			if _, err := f.WriteString("mine too"); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			appended := "old\nnew\n"
			if mode == "MOUNT" {
				appended = "old\n"
			}
			deadline := time.Now().Add(20 * time.Second)
			for key, want := range map[string]string{"other.txt": "mine", "mylock": "mine too", "log.txt": appended} {
				for {
					got, err := s3.ReadObject(t, bucket, key)
					if err == nil && string(got) == want {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("%s is not in the bucket as written: %q, %v", key, got, err)
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		})
	}
}

// appendTo opens p to append or create, as a shell's >> does, and writes s.
func appendTo(p, s string) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(s)
	return errors.Join(err, f.Close())
}
