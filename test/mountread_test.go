package test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"

	"github.com/bucket-csi/bucket-csi/pkg/store"
	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// TestMountReadsInAnyOrder: MOUNT serves reads from its read-ahead
// wherever they fall (pkg/fuseserver/stream.go), with the kernel's own
// read-ahead raised to 1 MiB (bdi.go), so the bytes must be the
// object's whatever the order: a front-to-back read, O_DIRECT reads (each
// one FUSE request at exactly its offset) from 8 threads at shuffled
// offsets and sizes, reads across the read-ahead's block edges and past
// the end, and small files opened in listing order (served from the
// small-file prefetch).
func TestMountReadsInAnyOrder(t *testing.T) {
	big := randomBytes(t, 20<<20+777)
	objects, small := map[string][]byte{"big.bin": big}, map[string][]byte{}
	for i := range 20 {
		name := fmt.Sprintf("small/%03d", i)
		small[name] = randomBytes(t, 10<<10+i)
		objects[name] = small[name]
	}
	target, indep := mountBucketReadOnly(t, "reads", objects)
	path := filepath.Join(target, "big.bin")

	// The server raises the mount's kernel read-ahead, so a buffered
	// read reaches it in requests of up to 1 MiB, not 128 KiB.
	var st unix.Stat_t
	if err := unix.Stat(target, &st); err != nil {
		t.Fatal(err)
	}
	ra, err := os.ReadFile(fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev)))
	if err != nil || string(bytes.TrimSpace(ra)) != "1024" {
		t.Errorf("mount's read_ahead_kb is %q (err %v), want 1024", ra, err)
	}

	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("front-to-back read: %d bytes, equal %v, err %v", len(got), bytes.Equal(got, big), err)
	}

	// Shuffled O_DIRECT reads from 8 threads on one open file: requests
	// of 4 KiB to 1 MiB, in a random order, some across the read-ahead's
	// block edges (256 KiB, 768 KiB, ...) and some past the end.
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		t.Fatalf("O_DIRECT open: %v", err)
	}
	defer unix.Close(fd)
	type req struct{ off, n int64 }
	var reqs []req
	rnd := rand.New(rand.NewPCG(3, 4))
	for off := int64(0); off < int64(len(big)); {
		n := int64(4<<10) << rnd.IntN(9) // 4 KiB .. 1 MiB
		reqs = append(reqs, req{off, n})
		off += n
	}
	for _, edge := range []int64{256 << 10, 768 << 10, 1792 << 10, 8 << 20} {
		reqs = append(reqs, req{edge - 4096, 64 << 10})
	}
	reqs = append(reqs, req{int64(len(big)) - 100, 1 << 20}, req{int64(len(big)) + 4096, 4096})
	rnd.Shuffle(len(reqs), func(i, j int) { reqs[i], reqs[j] = reqs[j], reqs[i] })
	work := make(chan req)
	errs := make(chan error, len(reqs))
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1<<20)
			for r := range work {
				n, err := unix.Pread(fd, buf[:r.n], r.off)
				want := big[min(r.off, int64(len(big))):min(r.off+r.n, int64(len(big)))]
				if err != nil || !bytes.Equal(buf[:max(n, 0)], want) {
					errs <- fmt.Errorf("pread(%d, %d): %d bytes, err %v, want %d bytes (equal: %v)", r.off, r.n, n, err, len(want), err == nil && bytes.Equal(buf[:n], want))
				}
			}
		}()
	}
	for _, r := range reqs {
		work <- r
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// Small files opened one after another in listing order: the first
	// ones fetch the next ahead; every one reads whole and equal.
	entries, err := os.ReadDir(filepath.Join(target, "small"))
	if err != nil || len(entries) != len(small) {
		t.Fatalf("listing small/: %d entries, %v", len(entries), err)
	}
	for _, e := range entries {
		name := "small/" + e.Name()
		got, err := os.ReadFile(filepath.Join(target, name))
		if err != nil || !bytes.Equal(got, small[name]) {
			t.Fatalf("%s: %d bytes, equal %v, err %v", name, len(got), bytes.Equal(got, small[name]), err)
		}
	}

	// An object replaced by a shorter one under an open reader: the
	// reader gets an error or the old bytes, never zeros or the new ones
	// spliced in.
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	head := make([]byte, 64<<10)
	if _, err := fh.ReadAt(head, 0); err != nil || !bytes.Equal(head, big[:len(head)]) {
		t.Fatalf("first read before the replacement: %v", err)
	}
	if err := indep.PutObject(context.Background(), "reads", "big.bin", []byte("short")); err != nil {
		t.Fatal(err)
	}
	tail := make([]byte, 1<<20)
	n, err := fh.ReadAt(tail, 12<<20)
	if err == nil && !bytes.Equal(tail[:n], big[12<<20:12<<20+n]) {
		t.Fatalf("read after the object was replaced returned %d bytes that are not the old object's", n)
	}
	if err != nil && !errors.Is(err, syscall.EIO) {
		t.Fatalf("read after the object was replaced: %v, want EIO or the old bytes", err)
	}
}

// TestMountReadCloseSendsNoFlush: a file MOUNT's read-ahead serves is
// opened with FOPEN_NOFLUSH (pkg/fuseserver/stream.go), so its close
// sends the server no FLUSH: reading files one after another costs a
// LOOKUP, an OPEN and the READs of each (and a RELEASE after the close),
// counted from the kernel's fuse:fuse_request_send tracepoint.
func TestMountReadCloseSendsNoFlush(t *testing.T) {
	files := map[string][]byte{"big.bin": randomBytes(t, 3<<20+5)}
	for i := range 20 {
		files[fmt.Sprintf("small-%03d", i)] = randomBytes(t, 10<<10+i)
	}
	target, _ := mountBucketReadOnly(t, "noflush", files)
	entries, err := os.ReadDir(target)
	if err != nil || len(entries) != len(files) {
		t.Fatalf("listing the volume: %d entries, %v", len(entries), err)
	}

	trace := startFUSETrace(t, target)
	for _, e := range entries {
		got, err := os.ReadFile(filepath.Join(target, e.Name()))
		if err != nil || !bytes.Equal(got, files[e.Name()]) {
			t.Fatalf("%s: %d bytes, equal %v, err %v", e.Name(), len(got), bytes.Equal(got, files[e.Name()]), err)
		}
	}
	sent := trace.stop(t)
	if sent["FUSE_OPEN"] != len(files) || sent["FUSE_FLUSH"] != 0 {
		t.Errorf("reading %d files sent the server %v, want %d FUSE_OPEN and no FUSE_FLUSH", len(files), sent, len(files))
	}
}

// mountBucketReadOnly creates bucket holding objects (key: bytes) and
// publishes a MOUNT volume of it read-only, unpublished when the test
// ends. It returns the pod's path of the volume and a client of the
// bucket's server that is not the driver's, to change the bucket beside
// the mount.
func mountBucketReadOnly(t *testing.T, bucket string, objects map[string][]byte) (string, store.Store) {
	t.Helper()
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t)
	ctx := context.Background()
	indep := s3.Store(t)
	if err := indep.CreateBucket(ctx, bucket); err != nil {
		t.Fatal(err)
	}
	for key, data := range objects {
		if err := indep.PutObject(ctx, bucket, key, data); err != nil {
			t.Fatal(err)
		}
	}
	vol, err := c.Controller.CreateVolume(ctx, &csi.CreateVolumeRequest{
		Name: "pv-" + bucket, VolumeCapabilities: []*csi.VolumeCapability{testenv.MountCap(rwx)},
		Parameters: map[string]string{"source": "s3://" + bucket, "mode": "MOUNT"}, Secrets: s3.Secrets(),
	})
	if err != nil {
		t.Fatal(err)
	}
	id := vol.GetVolume().GetVolumeId()
	staging, target := podPaths(t, drv)
	publish(t, c, id, staging, target, s3.Secrets(), true)
	t.Cleanup(func() { unpublish(t, c, id, staging, target) })
	return target, indep
}
