package test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// TestCachedPassthroughWriter: a new file created write-only on a
// read-write MOUNT_CACHED volume is written through FUSE passthrough (the
// server's stats count it), and nothing of it is lost:
//   - its size shows while it is written, and a reader beside it reads
//     its bytes;
//   - its fsync puts the bytes so far in the bucket;
//   - after the fsync, with listings made after the listing cache expired
//     (rclone would take the fsync's object for the file, and then
//     forget the file's entry), the writer rewrites the head, a second
//     writer writes in the middle (an fsync through a reader then puts
//     those bytes in the bucket), the first extends the file with a
//     truncate and appends: the file read right after the close, before
//     the upload, and the bucket after it hold exactly those bytes, not
//     the fsync's (rclone would fetch the bytes it does not know of from
//     that object over the file);
//   - once uploaded, the file is read through passthrough: rclone lists
//     every byte of it.
func TestCachedPassthroughWriter(t *testing.T) {
	if !kernelHasPassthrough(t) {
		t.Fatal("this kernel has no FUSE passthrough: the test needs 6.9 or later")
	}
	s3, drv, id, bucket, target := publishCachedRW(t, "pt-writer", []byte("seed"), "dir-cache-time=1s")
	path := filepath.Join(target, "new.bin")
	w, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if n := fuseStats(t, drv, id).PassthroughWrites; n != 1 {
		t.Fatalf("a write-only create of a new file: %d passthrough writers, want 1", n)
	}
	want := randomBytes(t, 3<<20)
	if _, err := w.Write(want); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != int64(len(want)) {
		t.Fatalf("while written: stat says %v (%v), want %d bytes", fi, err, len(want))
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("a reader beside the writer read %d bytes (%v), not the ones written", len(got), err)
	}
	if err := w.Sync(); err != nil {
		t.Fatalf("fsync of a passthrough writer: %v", err)
	}
	if got, err := s3.ReadObject(t, bucket, "new.bin"); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("right after fsync the bucket holds %d bytes (%v), not the ones written", len(got), err)
	}
	// Past the listing cache, the fsync's object is listed; past twice
	// that, rclone forgets the directory's entries unless one is virtual,
	// and the kernel looks the name up again: the file must stay the one
	// node the writer has (its key is hidden from the listings).
	for range 2 {
		time.Sleep(3 * time.Second)
		if _, err := os.ReadDir(target); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(path); err != nil {
			t.Fatal(err)
		}
	}

	want = bytes.Clone(want)
	head := []byte("rewritten after the fsync")
	if _, err := w.WriteAt(head, 0); err != nil {
		t.Fatal(err)
	}
	copy(want, head)
	j, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("a second writer beside a passthrough writer: %v", err)
	}
	if _, err := j.WriteAt([]byte("second writer"), 2<<20); err != nil {
		t.Fatal(err)
	}
	copy(want[2<<20:], "second writer")
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	syncReadOnly(t, path)
	if got, err := s3.ReadObject(t, bucket, "new.bin"); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("right after a reader's fsync the bucket holds %d bytes (%v), not the ones written", len(got), err)
	}
	if err := w.Truncate(4 << 20); err != nil {
		t.Fatalf("extending a passthrough writer's file: %v", err)
	}
	want = append(want, make([]byte, 1<<20)...)
	tail := randomBytes(t, 512<<10)
	if _, err := w.WriteAt(tail, 4<<20); err != nil {
		t.Fatal(err)
	}
	want = append(want, tail...)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read right after the close: %d bytes (%v), not the ones written", len(got), err)
	}
	waitBucket(t, s3, bucket, "new.bin", "the passthrough writer's file", func(b []byte) bool { return bytes.Equal(b, want) })
	if st := fuseStats(t, drv, id); st.PassthroughWrites != 2 || st.BytesWritten != int64(len(want)) {
		t.Fatalf("%d passthrough writers, %d bytes written, want 2 (the create and the second writer) and the file's %d", st.PassthroughWrites, st.BytesWritten, len(want))
	}
	warmPassthrough(t, drv, id, path, sha256.Sum256(want))
}

// TestCachedPassthroughWriterMapping: a read-write open beside a
// passthrough writer maps the file shared and writes through the mapping
// after every handle is closed; the bucket gets those bytes once the
// mapping is gone (the writer lasts until the kernel forgets the file).
func TestCachedPassthroughWriterMapping(t *testing.T) {
	if !kernelHasPassthrough(t) {
		t.Fatal("this kernel has no FUSE passthrough: the test needs 6.9 or later")
	}
	s3, drv, id, bucket, target := publishCachedRW(t, "pt-writer-map", []byte("seed"))
	path := filepath.Join(target, "mapped.bin")
	w, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	want := randomBytes(t, 1<<20)
	if _, err := w.Write(want); err != nil {
		t.Fatal(err)
	}
	m, mem := mapShared(t, path, len(want))
	copy(mem[4096:], "mapped while open")
	m.Close()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n := fuseStats(t, drv, id).PassthroughWrites; n != 2 {
		t.Fatalf("%d passthrough writers, want 2 (the create and the read-write open)", n)
	}
	time.Sleep(1500 * time.Millisecond) // past the write-back delay
	copy(mem[8192:], "mapped after every close")
	if err := unix.Munmap(mem); err != nil {
		t.Fatal(err)
	}
	want = bytes.Clone(want)
	copy(want[4096:], "mapped while open")
	copy(want[8192:], "mapped after every close")
	waitBucket(t, s3, bucket, "mapped.bin", "the bytes written through the mapping", func(b []byte) bool { return bytes.Equal(b, want) })
}

// TestCachedPassthroughWriterCloseOrder: files written through passthrough
// reach the bucket in the order they were closed (uploads run one at a
// time), though a large file's hand-over to the cache after its close
// takes longer than a small one's.
func TestCachedPassthroughWriterCloseOrder(t *testing.T) {
	if !kernelHasPassthrough(t) {
		t.Fatal("this kernel has no FUSE passthrough: the test needs 6.9 or later")
	}
	s3, drv, id, bucket, target := publishCachedRW(t, "pt-writer-order", []byte("seed"))
	big := randomBytes(t, 64<<20)
	if err := os.WriteFile(filepath.Join(target, "big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target, "small.bin"), []byte("closed second"), 0o644); err != nil {
		t.Fatal(err)
	}
	if n := fuseStats(t, drv, id).PassthroughWrites; n != 2 {
		t.Fatalf("%d passthrough writers, want 2", n)
	}
	waitBucket(t, s3, bucket, "small.bin", "the file closed second", func(b []byte) bool { return string(b) == "closed second" })
	if got, err := s3.ReadObject(t, bucket, "big.bin"); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("the file closed second is in the bucket, the one closed first not whole (%d bytes, %v)", len(got), err)
	}
}

// TestCachedPassthroughWriterTimesAndRenames: a time set right after the
// close of a file written through passthrough (as Python's shutil.copy2,
// curl -R and touch do), while the server hands the file to the cache, is
// the file's time in the bucket; and a directory holding a file written
// through passthrough and fsynced while still open is not renamed (EXDEV:
// the move would leave the fsync's object behind) until the file is
// closed, and then is, with the file.
func TestCachedPassthroughWriterTimesAndRenames(t *testing.T) {
	if !kernelHasPassthrough(t) {
		t.Fatal("this kernel has no FUSE passthrough: the test needs 6.9 or later")
	}
	s3, drv, id, bucket, target := publishCachedRW(t, "pt-writer-time", []byte("seed"))
	big := randomBytes(t, 64<<20)
	path := filepath.Join(target, "copied.bin")
	if err := os.WriteFile(path, big, 0o644); err != nil {
		t.Fatal(err)
	}
	set := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := os.Chtimes(path, set, set); err != nil {
		t.Fatal(err)
	}
	waitBucket(t, s3, bucket, "copied.bin", "the copied file", func(b []byte) bool { return bytes.Equal(b, big) })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		fi, err := os.Stat(path)
		if err == nil && fi.ModTime().Equal(set) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the time set after the close: the file says %v (%v), want %v", fi.ModTime(), err, set)
		}
	}

	dir := filepath.Join(target, "partial")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(filepath.Join(dir, "x.bin"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	data := randomBytes(t, 1<<20)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	if n := fuseStats(t, drv, id).PassthroughWrites; n != 2 {
		t.Fatalf("%d passthrough writers, want 2", n)
	}
	err = os.Rename(dir, filepath.Join(target, "done"))
	if !errors.Is(err, syscall.EXDEV) {
		t.Fatalf("renaming the directory of an open, fsynced passthrough writer: %v, want EXDEV", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		err = os.Rename(dir, filepath.Join(target, "done"))
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EXDEV) || time.Now().After(deadline) {
			t.Fatalf("renaming the directory after the writer's close: %v", err)
		}
	}
	waitBucket(t, s3, bucket, "done/x.bin", "the renamed directory's file", func(b []byte) bool { return bytes.Equal(b, data) })
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if _, err := s3.ReadObject(t, bucket, "partial/x.bin"); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("partial/x.bin is still in the bucket after the directory's rename")
		}
	}
}

// TestCachedSmallFilesProfileWritesThroughServer: on a MOUNT_CACHED volume
// with the small-files profile a new file created write-only is written
// through the server (no passthrough writer in the server's stats, where
// the defaults make it one: TestCachedPassthroughWriter), reaches the
// bucket whole, and is then read through passthrough like any cached file.
func TestCachedSmallFilesProfileWritesThroughServer(t *testing.T) {
	if !kernelHasPassthrough(t) {
		t.Fatal("this kernel has no FUSE passthrough: the test needs 6.9 or later")
	}
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t, "--write-back", "1s")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vol, err := c.Controller.CreateVolume(ctx, createReq("pt-small-files", map[string]string{"mode": "MOUNT_CACHED", "profile": "small-files"}, s3.Secrets()))
	if err != nil {
		t.Fatal(err)
	}
	id, vctx := vol.GetVolume().GetVolumeId(), vol.GetVolume().GetVolumeContext()
	staging, target := podPaths(t, drv)
	t.Cleanup(func() { unpublish(t, c, id, staging, target) }) // a no-op for what a failed publish left undone
	publishContext(t, c, id, staging, target, vctx, s3.Secrets(), false)
	if !fuseStats(t, drv, id).Passthrough {
		t.Fatal("the server does not use passthrough: the test needs it")
	}

	path := filepath.Join(target, "small.bin")
	w, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if n := fuseStats(t, drv, id).PassthroughWrites; n != 0 {
		t.Fatalf("a write-only create with the small-files profile: %d passthrough writers, want 0", n)
	}
	want := randomBytes(t, 16<<10)
	if _, err := w.Write(want); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read right after the close: %d bytes (%v), not the ones written", len(got), err)
	}
	waitBucket(t, s3, vctx["bucket"], "small.bin", "the small-files profile's file", func(b []byte) bool { return bytes.Equal(b, want) })
	if st := fuseStats(t, drv, id); st.PassthroughWrites != 0 {
		t.Fatalf("%d passthrough writers after the write, want 0", st.PassthroughWrites)
	}
	warmPassthrough(t, drv, id, path, sha256.Sum256(want))
}

// TestCachedWritersFollowTheFilesBefore: with the defaults, once 32 files
// under 512 KiB were written one after another on a MOUNT_CACHED volume,
// the next new file created write-only is written through the server, not
// as a passthrough writer (the stats count it in
// passthroughWritersDeclined); an append to an existing file is not a
// file written; a large file written through the server lets the next
// new file be a writer again; and every file reads back right after its
// close and reaches the bucket whole, whichever way it went.
func TestCachedWritersFollowTheFilesBefore(t *testing.T) {
	if !kernelHasPassthrough(t) {
		t.Fatal("this kernel has no FUSE passthrough: the test needs 6.9 or later")
	}
	s3, drv, id, bucket, target := publishCachedRW(t, "pt-writer-policy", []byte("seed"))
	written := map[string][]byte{}
	write := func(name string, size int) {
		t.Helper()
		data := randomBytes(t, size)
		path := filepath.Join(target, name)
		if err := os.WriteFile(path, data, 0o644); err != nil { // O_WRONLY|O_CREATE|O_TRUNC
			t.Fatal(err)
		}
		if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s read right after its close: %d bytes (%v), not the ones written", name, len(got), err)
		}
		written[name] = data
	}
	expect := func(what string, writers, declined int64) {
		t.Helper()
		if st := fuseStats(t, drv, id); st.PassthroughWrites != writers || st.PassthroughWritersDeclined != declined {
			t.Fatalf("%s: %d passthrough writers and %d declined, want %d and %d",
				what, st.PassthroughWrites, st.PassthroughWritersDeclined, writers, declined)
		}
	}
	// A writer ends at the kernel's release, after the close returned;
	// the stats count its bytes once it did, and the policy counted its
	// file before that.
	ended := func(n int64) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); fuseStats(t, drv, id).BytesWritten < n; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the writers did not end within 10 s of their closes")
			}
		}
	}
	const small = 16 << 10
	for i := range 31 {
		write(fmt.Sprintf("small-%02d.bin", i), small)
	}
	ended(31 * small) // small-00's writer too: the append below is not one
	const tail = "appended through the server"
	if err := appendTo(filepath.Join(target, "small-00.bin"), tail); err != nil { // an open, not a create
		t.Fatal(err)
	}
	written["small-00.bin"] = append(written["small-00.bin"], tail...)
	write("small-31.bin", small)
	expect("31 small files, an append, a 32nd small file", 32, 0)
	ended(32*small + int64(len(tail)))
	write("small-32.bin", small)
	expect("a 33rd small file", 32, 1)
	write("large.bin", 1<<20)
	expect("a large file after them", 32, 2)
	// Its release counted its size before queueing its upload.
	waitBucket(t, s3, bucket, "large.bin", "the large file", func(b []byte) bool { return bytes.Equal(b, written["large.bin"]) })
	write("after-large.bin", small)
	expect("a small file after the large one", 33, 2)
	for name, data := range written {
		waitBucket(t, s3, bucket, name, name, func(b []byte) bool { return bytes.Equal(b, data) })
	}
}

// TestCachedPassthroughWriterCloseReportsADeadServer: a passthrough
// writer's writes go to the cache file without the FUSE server, so they
// go on succeeding after the server died; its close does not: the FLUSH
// the kernel sends for it fails, so the application learns that what it
// wrote may not reach the bucket (keeping that FLUSH is why a writer's
// journal note is recorded at its close, docs/benchmarks.md, "The
// defaults write small files through the server after a run of them").
func TestCachedPassthroughWriterCloseReportsADeadServer(t *testing.T) {
	if !kernelHasPassthrough(t) {
		t.Fatal("this kernel has no FUSE passthrough: the test needs 6.9 or later")
	}
	_, drv, _, id, _, _, target := cachedVolume(t, "pvc-pt-dead")
	w, err := os.OpenFile(filepath.Join(target, "ckpt.bin"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if n := fuseStats(t, drv, id).PassthroughWrites; n != 1 {
		t.Fatalf("a write-only create of a new file: %d passthrough writers, want 1", n)
	}
	// The mount's first write asks the server once for the file's
	// security.capability (the kernel's file_remove_privs); the answer,
	// ENOSYS, keeps the kernel from asking again.
	if _, err := w.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	killTheServer(t, drv)
	if _, err := w.Write(randomBytes(t, 1<<20)); err != nil {
		t.Fatalf("a passthrough write after the server died: %v (it goes to the cache file)", err)
	}
	if err := w.Close(); err == nil {
		t.Fatal("the close of a passthrough writer whose server died succeeded: the application cannot learn its file may not reach the bucket")
	}
}
