package test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

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
// written outside below the name. A touch keeps such an object and an
// append appends to it (MOUNT, which cannot change a file in place, fails
// both; before, both replaced it). An exchange of two files answers
// EINVAL (rclone would replace one). A rename without replacing, or an
// exclusive create, of a free name goes ahead. MOUNT and MOUNT_CACHED.
func TestExclusiveNamesKeepOthersObjects(t *testing.T) {
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t)
	for _, mode := range []string{"MOUNT", "MOUNT_CACHED"} {
		t.Run(mode, func(t *testing.T) {
			bucket, target := publishListed(t, s3, drv, c, "pvc-rename-"+mode, mode)

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
			awaitObjects(t, s3, bucket, map[string]string{"other.txt": "mine", "mylock": "mine too", "log.txt": appended})
		})
	}
}

// publishListed creates and publishes a read-write volume of mode whose
// listings are trusted for 10 minutes (objects written outside stay
// unknown to the mount), unpublished when t ends.
func publishListed(t *testing.T, s3 *testenv.S3, drv *testenv.Driver, c testenv.Clients, name, mode string) (bucket, target string) {
	t.Helper()
	vol, err := c.Controller.CreateVolume(context.Background(), createReq(name, map[string]string{"mode": mode}, s3.Secrets()))
	if err != nil {
		t.Fatal(err)
	}
	id := vol.GetVolume().GetVolumeId()
	staging, target := podPaths(t, drv)
	publish(t, c, id, staging, target, s3.Secrets(), false, "dir-cache-time=10m")
	t.Cleanup(func() { unpublish(t, c, id, staging, target) })
	return vol.GetVolume().GetVolumeContext()["bucket"], target
}

// awaitObjects waits (waitBucket) for the bucket to hold each key with its
// content (MOUNT_CACHED uploads after its write-back delay).
func awaitObjects(t *testing.T, s3 *testenv.S3, bucket string, want map[string]string) {
	t.Helper()
	for key, data := range want {
		waitBucket(t, s3, bucket, key, key+" as written", func(got []byte) bool { return string(got) == data })
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

// TestRenameTargetsFollowPOSIX: rclone renames a directory by moving its
// objects one by one over whatever the target holds, and a file onto a
// directory's name, so the driver checks the target as POSIX does: a
// directory onto a directory with entries (listed, or keys written
// outside below a name the listing lacks) answers ENOTEMPTY and a file
// onto a directory EISDIR, a directory onto an object written outside
// ENOTDIR, with nothing moved, and what they found is shown; renames onto
// free names and empty directories go ahead. MOUNT and MOUNT_CACHED.
func TestRenameTargetsFollowPOSIX(t *testing.T) {
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t)
	for _, mode := range []string{"MOUNT", "MOUNT_CACHED"} {
		t.Run(mode, func(t *testing.T) {
			bucket, target := publishListed(t, s3, drv, c, "pvc-renames-"+mode, mode)

			at := func(rel string) string { return filepath.Join(target, rel) }
			for _, d := range []string{"dir-a", "full", "empty", "empty2"} {
				if err := os.Mkdir(at(d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for rel, data := range map[string]string{"dir-a/x": "mine", "full/y": "listed", "f.txt": "file"} {
				if err := os.WriteFile(at(rel), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := os.ReadDir(target); err != nil {
				t.Fatal(err)
			}
			if _, err := os.ReadDir(at("empty")); err != nil {
				t.Fatal(err)
			}
			putObject(t, s3, bucket, "dir-c/x", []byte("theirs"))
			putObject(t, s3, bucket, "obj", []byte("an object"))
			putObject(t, s3, bucket, "empty/z", []byte("theirs too"))
			for _, rel := range []string{"dir-c", "obj", "empty/z"} {
				if _, err := os.Stat(at(rel)); !errors.Is(err, syscall.ENOENT) {
					t.Fatalf("stat of %s written outside after the listing was cached: %v, want ENOENT (the case under test)", rel, err)
				}
			}

			for _, r := range []struct {
				from, to string
				want     syscall.Errno
			}{
				{"dir-a", "full", syscall.ENOTEMPTY},  // a listed directory with entries
				{"dir-a", "dir-c", syscall.ENOTEMPTY}, // keys written outside below the target
				{"dir-a", "empty", syscall.ENOTEMPTY}, // listed empty, keys written outside below
				{"dir-a", "obj", syscall.ENOTDIR},     // an object written outside
				{"f.txt", "full", syscall.EISDIR},     // (the kernel answers this one itself)
			} {
				if err := unix.Rename(at(r.from), at(r.to)); !errors.Is(err, r.want) {
					t.Errorf("rename %s onto %s: %v, want %v", r.from, r.to, err, r.want)
				}
			}
			for key, want := range map[string]string{"dir-c/x": "theirs", "obj": "an object", "empty/z": "theirs too"} {
				if got, err := s3.ReadObject(t, bucket, key); err != nil || string(got) != want {
					t.Fatalf("%s holds %q (%v) after refused renames, want %q", key, got, err, want)
				}
			}
			// What the refusals found is shown now.
			for rel, want := range map[string]string{"dir-a/x": "mine", "f.txt": "file", "dir-c/x": "theirs", "full/y": "listed", "obj": "an object", "empty/z": "theirs too"} {
				if got, err := os.ReadFile(at(rel)); err != nil || string(got) != want {
					t.Fatalf("%s reads %q (%v) after refused renames, want %q", rel, got, err, want)
				}
			}

			if err := unix.Rename(at("dir-a"), at("empty2")); err != nil {
				t.Fatalf("rename of a directory onto an empty directory: %v", err)
			}
			if err := unix.Rename(at("empty2"), at("dir-d")); err != nil {
				t.Fatalf("rename of a directory onto a free name: %v", err)
			}
			if err := unix.Rename(at("f.txt"), at("g.txt")); err != nil {
				t.Fatalf("rename of a file onto a free name: %v", err)
			}
			awaitObjects(t, s3, bucket, map[string]string{"dir-d/x": "mine", "g.txt": "file"})
		})
	}
}
