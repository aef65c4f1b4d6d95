package test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/sys/unix"

	"github.com/bucket-csi/bucket-csi/pkg/fuseproto"
	"github.com/bucket-csi/bucket-csi/pkg/mounter"
	"github.com/bucket-csi/bucket-csi/pkg/stage"
	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// kernelHasPassthrough reports whether the running kernel is 6.9 or
// later, the first with FUSE passthrough, built with it.
func kernelHasPassthrough(t *testing.T) bool {
	t.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	parts := strings.SplitN(unix.ByteSliceToString(u.Release[:]), ".", 3)
	major, _ := strconv.Atoi(parts[0])
	minor := 0
	if len(parts) > 1 {
		minor, _ = strconv.Atoi(strings.TrimFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	}
	if major < 6 || major == 6 && minor < 9 {
		return false
	}
	// Where the kernel's configuration is readable, it must have it.
	var config []byte
	if f, err := os.Open("/proc/config.gz"); err == nil {
		defer f.Close()
		if z, err := gzip.NewReader(f); err == nil {
			config, _ = io.ReadAll(z)
		}
	} else {
		config, _ = os.ReadFile("/boot/config-" + unix.ByteSliceToString(u.Release[:]))
	}
	return config == nil || bytes.Contains(config, []byte("\nCONFIG_FUSE_PASSTHROUGH=y"))
}

// fuseStats asks the FUSE server of volume id for its figures.
func fuseStats(t *testing.T, drv *testenv.Driver, id string) fuseproto.Stats {
	t.Helper()
	for _, rec := range drv.Staged(t) {
		if rec.VolumeID != id {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// The control socket pkg/stage gives each FUSE server.
		st, err := mounter.QueryStats(ctx, stage.ControlSocket(rec))
		if err != nil {
			t.Fatalf("stats of %s: %v", id, err)
		}
		return st
	}
	t.Fatalf("volume %s is not staged", id)
	return fuseproto.Stats{}
}

func putObject(t *testing.T, s *testenv.S3, bucket, key string, data []byte) {
	t.Helper()
	if _, err := s.Client().PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(data)}); err != nil {
		t.Fatalf("putting %s: %v", key, err)
	}
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	return sha256.Sum256(data)
}

// TestCachedPassthroughReadOnly: on a read-only MOUNT_CACHED volume, a file
// wholly in the cache is read through FUSE passthrough (the server's stats
// count the opens; on kernels before 6.9 they say passthrough is off and
// every read goes through the server), with the same bytes as the first
// read through the server and as the bucket. Two readers at once, fsync
// of a passthrough handle, and an object replaced in the bucket while a
// passthrough reader is open: the open reader still reads the whole old
// content (never a hole of zeros), a new open after the listing expired
// reads the new content, and no open fails.
func TestCachedPassthroughReadOnly(t *testing.T) {
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t)
	vol, err := c.Controller.CreateVolume(context.Background(), createReq("pt-ro", map[string]string{"mode": "MOUNT_CACHED"}, s3.Secrets()))
	if err != nil {
		t.Fatal(err)
	}
	id, bucket := vol.GetVolume().GetVolumeId(), vol.GetVolume().GetVolumeContext()["bucket"]
	old := randomBytes(t, 8<<20+5)
	putObject(t, s3, bucket, "data/big.bin", old)
	other := randomBytes(t, 3<<20+1)
	putObject(t, s3, bucket, "data/other.bin", other)
	staging, target := podPaths(t, drv)
	publish(t, c, id, staging, target, s3.Secrets(), false, "ro", "dir-cache-time=1s")
	defer unpublish(t, c, id, staging, target)
	path := filepath.Join(target, "data", "big.bin")
	want := sha256.Sum256(old)

	if got := fileSum(t, path); got != want {
		t.Fatal("first read (through the server) differs from the bucket")
	}
	st := fuseStats(t, drv, id)
	if st.Passthrough != kernelHasPassthrough(t) {
		t.Fatalf("stats say passthrough=%v on this kernel", st.Passthrough)
	}
	if st.PassthroughOpens != 0 {
		t.Fatalf("%d passthrough opens before the file was cached", st.PassthroughOpens)
	}
	// The kernel releases the first handle after close returns: a read
	// may still find it open and go through the server.
	for i := 0; ; i++ {
		if got := fileSum(t, path); got != want {
			t.Fatal("a read of the cached file differs from the bucket")
		}
		if !st.Passthrough {
			return // the rest is about passthrough itself
		}
		if fuseStats(t, drv, id).PassthroughOpens > 0 {
			break
		}
		if i == 20 {
			t.Fatal("no passthrough open after reading the cached file 20 times")
		}
		time.Sleep(100 * time.Millisecond)
	}
	opens := fuseStats(t, drv, id).PassthroughOpens

	// A file cached whole while a handle served through the server is
	// open: a second open is served the same way, never refused.
	x, err := os.Open(filepath.Join(target, "data", "other.bin"))
	if err != nil {
		t.Fatal(err)
	}
	gotX, err := io.ReadAll(x)
	if err != nil || !bytes.Equal(gotX, other) {
		t.Fatalf("reading other.bin: %v or different bytes", err)
	}
	if gotY, err := os.ReadFile(filepath.Join(target, "data", "other.bin")); err != nil || !bytes.Equal(gotY, other) {
		t.Fatalf("a second open of a file held open through the server: %v or different bytes", err)
	}
	x.Close()
	if n := fuseStats(t, drv, id).PassthroughOpens; n != opens {
		t.Fatalf("%d passthrough opens of a file held open through the server", n-opens)
	}

	// Two readers at once, and fsync of a passthrough handle.
	a, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := os.Open(path)
	if err != nil {
		t.Fatalf("second reader while a passthrough reader is open: %v", err)
	}
	if err := b.Sync(); err != nil {
		t.Fatalf("fsync of a passthrough handle: %v", err)
	}
	gotB, err := io.ReadAll(b)
	b.Close()
	if err != nil || sha256.Sum256(gotB) != want {
		t.Fatalf("second reader: %v or different bytes", err)
	}
	if n := fuseStats(t, drv, id).PassthroughOpens; n != opens+2 {
		t.Fatalf("two readers of the cached file made %d passthrough opens, want 2", n-opens)
	}

	// The object replaced in the bucket (larger) while a is open.
	head := make([]byte, 1<<20)
	if _, err := io.ReadFull(a, head); err != nil {
		t.Fatal(err)
	}
	changed := randomBytes(t, 12<<20+3)
	putObject(t, s3, bucket, "data/big.bin", changed)
	time.Sleep(2500 * time.Millisecond) // past dir-cache-time
	var fresh []byte
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Second) {
		fresh, err = os.ReadFile(path)
		if err != nil {
			t.Fatalf("open after the object changed, with a passthrough reader open: %v", err)
		}
		if bytes.Equal(fresh, changed) || time.Now().After(deadline) {
			break
		}
	}
	if !bytes.Equal(fresh, changed) {
		t.Fatalf("a new open reads %d bytes, not the replaced object's %d", len(fresh), len(changed))
	}
	rest, err := io.ReadAll(a)
	if err != nil {
		t.Fatalf("the open reader after the object changed: %v", err)
	}
	if got := sha256.Sum256(append(head, rest...)); got != want {
		t.Fatalf("the reader open across the change read %d bytes, not the whole old content", len(head)+len(rest))
	}
	a.Close()
	if got := fileSum(t, path); got != sha256.Sum256(changed) {
		t.Fatal("after every reader closed, a read differs from the bucket")
	}
	st = fuseStats(t, drv, id)
	t.Logf("passthrough %v, passthrough opens %d, bytes read through the server %d", st.Passthrough, st.PassthroughOpens, st.BytesRead)
}

// waitBucket waits up to a minute until the object at key satisfies ok.
func waitBucket(t *testing.T, s *testenv.S3, bucket, key, what string, ok func([]byte) bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		got, err := s.ReadObject(t, bucket, key)
		if err == nil && ok(got) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not in the bucket after a minute (%d bytes, %v)", what, len(got), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// warmPassthrough reads path (whose content has digest want) on volume
// id until an open of it is answered with passthrough.
func warmPassthrough(t *testing.T, drv *testenv.Driver, id, path string, want [32]byte) {
	t.Helper()
	if !kernelHasPassthrough(t) {
		t.Fatal("this kernel has no FUSE passthrough: the test needs 6.9 or later")
	}
	before := fuseStats(t, drv, id).PassthroughOpens
	for i := 0; fuseStats(t, drv, id).PassthroughOpens == before; i++ {
		if got := fileSum(t, path); got != want {
			t.Fatal("a read differs from the bucket")
		}
		if i == 20 {
			t.Fatal("no passthrough open after reading the cached file 20 times on a read-write volume")
		}
		// rclone saves the metadata passthrough reads at the last
		// close, which the kernel sends after close(2) returned.
		time.Sleep(300 * time.Millisecond)
	}
}

// TestCachedPassthroughRightAfterTheFill: on a read-write volume a file
// fetched through the server is passthrough at its next open, with no
// pause between: rclone saves the fetched ranges at the last close (no
// handle caching), where before it waited 200 ms, and reopens within
// that kept every read on the server (0 of 5 here, 0 of 499 reopens of a
// 1 MiB file; docs/benchmarks.md). The kernel sends a release after
// close(2) returned, so a reopen may still find the last handle open:
// 3 of 5 are asked for. Every read has the object's bytes.
func TestCachedPassthroughRightAfterTheFill(t *testing.T) {
	if !kernelHasPassthrough(t) {
		t.Fatal("this kernel has no FUSE passthrough: the test needs 6.9 or later")
	}
	data := randomBytes(t, 8<<20+5)
	_, drv, id, _, target := publishCachedRW(t, "pt-refill", data)
	path := filepath.Join(target, "f.bin")
	want := sha256.Sum256(data)
	for range 6 {
		if got := fileSum(t, path); got != want {
			t.Fatal("a read differs from the bucket")
		}
	}
	if n := fuseStats(t, drv, id).PassthroughOpens; n < 3 {
		t.Fatalf("a file read 6 times in a row on a read-write volume: %d of the 5 reopens passthrough, want 3 or more", n)
	}
}

// publishCachedRW starts a driver whose uploads wait 1 s after a close,
// creates the MOUNT_CACHED volume name holding f.bin (data) and publishes
// it read-write with the mount flags (unpublished at the test's end).
func publishCachedRW(t *testing.T, name string, data []byte, flags ...string) (s3 *testenv.S3, drv *testenv.Driver, id, bucket, target string) {
	t.Helper()
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t, "--write-back", "1s")
	vol, err := c.Controller.CreateVolume(context.Background(), createReq(name, map[string]string{"mode": "MOUNT_CACHED"}, s3.Secrets()))
	if err != nil {
		t.Fatal(err)
	}
	id, bucket = vol.GetVolume().GetVolumeId(), vol.GetVolume().GetVolumeContext()["bucket"]
	putObject(t, s3, bucket, "f.bin", data)
	staging, target := podPaths(t, drv)
	publish(t, c, id, staging, target, s3.Secrets(), false, flags...)
	t.Cleanup(func() { unpublish(t, c, id, staging, target) })
	return s3, drv, id, bucket, target
}

// mapShared opens path read-write, beside a passthrough reader, and maps
// its first size bytes shared and writable.
func mapShared(t *testing.T, path string, size int) (*os.File, []byte) {
	t.Helper()
	m, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("read-write open while a passthrough reader is open: %v", err)
	}
	mem, err := unix.Mmap(int(m.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		m.Close()
		t.Fatalf("shared mapping of the read-write open: %v", err)
	}
	return m, mem
}

// TestCachedPassthroughReadWrite: on a read-write MOUNT_CACHED volume a
// read-only open of a file wholly cached and clean is passthrough too
// (where the kernel offers it), and every write still reaches the bucket:
//   - a writer opened while a passthrough reader is open is not refused,
//     writes through the server, and the open reader sees its bytes;
//   - fsync of such a writer puts its bytes in the bucket before it
//     returns;
//   - bytes written through a shared mapping of a read-write open made
//     while the passthrough reader was open (the kernel writes the cache
//     file, the server never sees them), some after that open's close,
//     reach the bucket once the mapping is gone.
func TestCachedPassthroughReadWrite(t *testing.T) {
	first := randomBytes(t, 2<<20+3)
	s3, drv, id, bucket, target := publishCachedRW(t, "pt-rw", first)
	path := filepath.Join(target, "f.bin")
	want := sha256.Sum256(first)
	warmPassthrough(t, drv, id, path, want)

	r, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	opens := fuseStats(t, drv, id).PassthroughOpens
	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("writer open while a passthrough reader is open: %v", err)
	}
	if _, err := w.WriteAt([]byte("changed"), 0); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 7)
	if _, err := r.ReadAt(head, 0); err != nil || string(head) != "changed" {
		t.Fatalf("the open reader after the write read %q (%v)", head, err)
	}
	w, err = os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte("synced"), 100); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); err != nil {
		t.Fatalf("fsync of a writer beside a passthrough reader: %v", err)
	}
	got, err := s3.ReadObject(t, bucket, "f.bin")
	if err != nil || len(got) != len(first) || string(got[:7]) != "changed" || string(got[100:106]) != "synced" {
		t.Fatalf("right after fsync the bucket holds %d bytes starting %q (%v)", len(got), got[:min(7, len(got))], err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	// A read-write open beside the reader, mapped shared and written
	// after its close.
	m, mem := mapShared(t, path, len(first))
	copy(mem[1<<20:], "mapped before close")
	m.Close()
	time.Sleep(1500 * time.Millisecond) // past the write-back delay of the writes above
	copy(mem[1<<20+512:], "and after")
	if err := unix.Munmap(mem); err != nil {
		t.Fatal(err)
	}
	r.Close()
	waitBucket(t, s3, bucket, "f.bin", "the bytes written through the shared mapping", func(b []byte) bool {
		return len(b) == len(first) && string(b[1<<20:1<<20+19]) == "mapped before close" && string(b[1<<20+512:1<<20+521]) == "and after" &&
			string(b[:7]) == "changed" && string(b[100:106]) == "synced"
	})
	// The writers and the read-write open went through the server.
	if n := fuseStats(t, drv, id).PassthroughOpens; n != opens {
		t.Fatalf("passthrough opens went from %d to %d beside the reader", opens, n)
	}
}

// TestCachedPassthroughMappingBesideAnOutsideChange: a file written
// through a shared mapping (an O_RDWR open beside a passthrough reader)
// whose object changed outside the volume before the mapping's node was
// settled is not written over the new object, not a byte of it: the new
// object stays as it is and the mapping's file is saved beside it, as
// <name>.conflict-<UTC time>, and counted.
func TestCachedPassthroughMappingBesideAnOutsideChange(t *testing.T) {
	first := randomBytes(t, 1<<20+5)
	first[0] = 'a'
	s3, drv, id, bucket, target := publishCachedRW(t, "pt-conflict", first, "dir-cache-time=1s")
	path := filepath.Join(target, "f.bin")
	warmPassthrough(t, drv, id, path, sha256.Sum256(first))

	r, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	m, mem := mapShared(t, path, len(first))
	const mapped = "written through the mapping"
	copy(mem[4096:], mapped)
	if err := unix.Munmap(mem); err != nil {
		t.Fatal(err)
	}
	m.Close()
	// The object changes outside; the volume sees it once its listing
	// expires, while the reader still holds the node.
	second := bytes.Repeat([]byte("b"), 3000)
	putObject(t, s3, bucket, "f.bin", second)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if fi, err := os.Stat(path); err == nil && fi.Size() == int64(len(second)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the volume did not see the object's outside change within 30 s (dir-cache-time=1s)")
		}
	}
	r.Close()

	var kept string
	for deadline := time.Now().Add(30 * time.Second); kept == ""; time.Sleep(200 * time.Millisecond) {
		entries, err := os.ReadDir(target)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "f.bin.conflict-") {
				kept = e.Name()
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no conflict copy beside f.bin 30 s after the mapping's node was released")
		}
	}
	want := append([]byte{}, first...)
	copy(want[4096:], mapped)
	waitBucket(t, s3, bucket, kept, "the conflict copy of the mapped file", func(b []byte) bool { return bytes.Equal(b, want) })
	// Give a wrong settle time to upload over the new object.
	time.Sleep(3 * time.Second)
	if got, err := s3.ReadObject(t, bucket, "f.bin"); err != nil || !bytes.Equal(got, second) {
		t.Fatalf("the object changed outside is no longer as written: %d bytes starting %q (%v)", len(got), got[:min(8, len(got))], err)
	}
	if n := fuseStats(t, drv, id).MappedConflicts; n != 1 {
		t.Fatalf("mappedConflicts is %d, want 1", n)
	}
}

// TestCachedPassthroughMappingFollowsARename: a file written through a
// shared mapping and renamed while the mapping lives is settled under its
// new name: the bucket gets the mapping's bytes there, and no conflict
// copy appears.
func TestCachedPassthroughMappingFollowsARename(t *testing.T) {
	first := randomBytes(t, 1<<20+7)
	s3, drv, id, bucket, target := publishCachedRW(t, "pt-rename", first)
	path := filepath.Join(target, "f.bin")
	warmPassthrough(t, drv, id, path, sha256.Sum256(first))

	r, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	m, mem := mapShared(t, path, len(first))
	const mapped = "written through the mapping"
	copy(mem[8192:], mapped)
	m.Close()
	moved := filepath.Join(target, "g.bin")
	if err := os.Rename(path, moved); err != nil {
		t.Fatal(err)
	}
	copy(mem[1<<20:], mapped) // after the rename too
	r.Close()
	if err := unix.Munmap(mem); err != nil {
		t.Fatal(err)
	}
	want := append([]byte{}, first...)
	copy(want[8192:], mapped)
	copy(want[1<<20:], mapped)
	waitBucket(t, s3, bucket, "g.bin", "the renamed file with the mapping's bytes", func(b []byte) bool { return bytes.Equal(b, want) })
	time.Sleep(2 * time.Second)
	entries, err := os.ReadDir(target)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "g.bin" {
			t.Errorf("after the rename the volume holds %s too", e.Name())
		}
	}
	if n := fuseStats(t, drv, id).MappedConflicts; n != 0 {
		t.Fatalf("mappedConflicts is %d, want 0", n)
	}
}
