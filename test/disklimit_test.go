package test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/sys/unix"

	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// TestCachedVolumeHeldToItsLimit: a MOUNT_CACHED volume's cache is a
// filesystem of its own of the cache limit (here 48 MiB), so nothing done
// through the volume takes more of the node's disk than that. A 96 MiB
// object reads back whole (rclone makes room by dropping clean cached
// ranges); a 96 MiB write, which rclone keeps in the cache until the file
// is closed, stops with ENOSPC once clean cached data was dropped for it;
// none of it takes more of the node's disk than the image already holds;
// the unstage removes the image. Before images, the write succeeded and
// the cache took 96 MiB of the node's disk.
func TestCachedVolumeHeldToItsLimit(t *testing.T) {
	testenv.RequireFUSE(t)
	const limit = 48 << 20
	s3, drv, c := startAll(t, "--cache-max-size", fmt.Sprint(limit))
	ctx := context.Background()
	if err := s3.Store(t).CreateBucket(ctx, "cache-limit"); err != nil {
		t.Fatal(err)
	}
	big := randomBytes(t, 96<<20)
	putObject(t, s3, "cache-limit", "big.bin", big)
	id, staging := stageSourceCached(t, c, drv, "pv-cache-limit", "cache-limit", s3.Secrets())
	imgs, _ := filepath.Glob(filepath.Join(drv.StateDir, "cache", "*.img"))
	if len(imgs) != 1 {
		t.Fatalf("cache images: %v, want one", imgs)
	}
	img := imgs[0]
	before := nodeDiskUse(t, drv.StateDir)
	held := func(when string) {
		t.Helper()
		grew := nodeDiskUse(t, drv.StateDir) - before
		t.Logf("%s: the state directory took %.1f MiB more of the node's disk", when, float64(grew)/(1<<20))
		if grew > 4<<20 {
			t.Fatalf("%s: the state directory took %d bytes more of the node's disk, past the cache's image", when, grew)
		}
	}

	got, err := os.ReadFile(filepath.Join(staging, "big.bin"))
	if err != nil || sha256.Sum256(got) != sha256.Sum256(big) {
		t.Fatalf("reading a 96 MiB object through a 48 MiB cache: %d bytes, err %v, equal %v", len(got), err, err == nil && sha256.Sum256(got) == sha256.Sum256(big))
	}
	held("after reading 96 MiB")

	written, werr := writeUpTo(filepath.Join(staging, "out.bin"), 96<<20)
	held("after writing")
	if !errors.Is(werr, syscall.ENOSPC) {
		t.Fatalf("writing 96 MiB into a 48 MiB cache: %d bytes written, err %v; want ENOSPC", written, werr)
	}
	t.Logf("the write stopped after %.1f MiB: %v", float64(written)/(1<<20), werr)
	if written < 24<<20 {
		t.Fatalf("the write stopped after %d bytes: the read's clean data was not dropped to make room", written)
	}

	unstageUntilDone(t, c, id, staging, 30*time.Second, 2*time.Minute)
	if _, err := os.Stat(img); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the cache image is left after the unstage: %v", err)
	}
}

// TestCachedManySmallFilesRead: a MOUNT_CACHED volume reads more small
// files than its cache can hold. rclone keeps two files per cached file
// (data and metadata) and makes room by bytes only, so the cache's
// filesystem must run short of blocks before inodes: with an inode per
// 8 KiB, a 32 MiB cache refused new cache files after about 2,000 files of
// 1 KiB with most of its bytes free, and every later open of a file not
// yet cached failed (EIO) until rclone dropped files unused for an hour.
// Here 2,400 files read first (more than the old inodes, fewer than the
// blocks hold), then, once rclone let their handles go, 1,200 more
// (past the blocks: clean files must be dropped for them).
func TestCachedManySmallFilesRead(t *testing.T) {
	testenv.RequireFUSE(t)
	const limit, first, second = 32 << 20, 2400, 1200
	s3, drv, c := startAll(t, "--cache-max-size", fmt.Sprint(limit))
	ctx := context.Background()
	if err := s3.Store(t).CreateBucket(ctx, "many-small"); err != nil {
		t.Fatal(err)
	}
	content := func(i int) []byte { return bytes.Repeat([]byte(fmt.Sprintf("%05d\n", i)), 1024/6) }
	name := func(i int) string { return fmt.Sprintf("many/%05d", i) }
	putMany(t, s3, "many-small", first+second, func(i int) (string, []byte) { return name(i), content(i) })
	id, staging := stageSourceCached(t, c, drv, "pv-many-small", "many-small", s3.Secrets())
	imgs, _ := filepath.Glob(filepath.Join(drv.StateDir, "cache", "*.img"))
	if len(imgs) != 1 {
		t.Fatalf("cache images: %v, want one", imgs)
	}
	cacheFS := strings.TrimSuffix(imgs[0], ".img")
	if ents, err := os.ReadDir(filepath.Join(staging, "many")); err != nil || len(ents) != first+second {
		t.Fatalf("listing: %d entries, err %v; want %d", len(ents), err, first+second)
	}
	read := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			got, err := os.ReadFile(filepath.Join(staging, name(i)))
			if err != nil || !bytes.Equal(got, content(i)) {
				var st unix.Statfs_t
				_ = unix.Statfs(cacheFS, &st)
				t.Fatalf("reading file %d of %d: err %v, right bytes %v; the cache has %d of %d inodes and %d of %d blocks free",
					i+1, first+second, err, bytes.Equal(got, content(i)), st.Ffree, st.Files, st.Bavail, st.Blocks)
			}
		}
	}
	read(0, first)
	// rclone keeps a closed file's handle (and its cache item in use)
	// for 5 s: only then may it drop the first files.
	time.Sleep(6 * time.Second)
	read(first, first+second)
	var st unix.Statfs_t
	if err := unix.Statfs(cacheFS, &st); err != nil {
		t.Fatal(err)
	}
	t.Logf("after %d files: the cache has %d of %d inodes and %d of %d blocks free", first+second, st.Ffree, st.Files, st.Bavail, st.Blocks)
	if st.Ffree <= st.Bavail {
		t.Fatalf("the cache has %d inodes and %d blocks free: it must run short of blocks first", st.Ffree, st.Bavail)
	}
	unstageUntilDone(t, c, id, staging, 30*time.Second, 2*time.Minute)
}

// putMany puts n objects into bucket, 16 at a time; object i is what
// obj(i) returns.
func putMany(t *testing.T, s *testenv.S3, bucket string, n int, obj func(int) (string, []byte)) {
	t.Helper()
	next := make(chan int)
	errs := make(chan error, 16)
	for range 16 {
		go func() {
			var err error
			for i := range next {
				if err == nil {
					key, data := obj(i)
					_, err = s.Client().PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(data)})
				}
			}
			errs <- err
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	for range 16 {
		if err := <-errs; err != nil {
			t.Fatalf("putting objects: %v", err)
		}
	}
}

// nodeDiskUse is what the files below root take of root's own
// filesystem, the node's disk: mounts below it (the volumes' images) are
// left out, and so are log files, whose size depends on the log level.
func nodeDiskUse(t *testing.T, root string) int64 {
	t.Helper()
	var top unix.Stat_t
	if err := unix.Stat(root, &top); err != nil {
		t.Fatal(err)
	}
	var total int64
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // gone while walking
		}
		var st unix.Stat_t
		if unix.Lstat(p, &st) != nil {
			return nil
		}
		if st.Dev != top.Dev {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".log") {
			total += st.Blocks * 512
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return total
}

// stageSourceCached provisions a MOUNT_CACHED volume of bucket named pv
// and stages it, returning its ID and staging path.
func stageSourceCached(t *testing.T, c testenv.Clients, drv *testenv.Driver, pv, bucket string, secrets map[string]string) (id, staging string) {
	t.Helper()
	v, err := c.Controller.CreateVolume(context.Background(), createReq(pv, map[string]string{"source": "s3://" + bucket, "mode": "MOUNT_CACHED"}, secrets))
	if err != nil {
		t.Fatal(err)
	}
	id = v.GetVolume().GetVolumeId()
	staging, _ = podPaths(t, drv)
	if err := stageCached(t, c, id, staging, secrets); err != nil {
		t.Fatal(err)
	}
	return id, staging
}

// writeUpTo writes up to n bytes to a new file at path in 1 MiB writes,
// then closes it, and returns the bytes written and the first error.
func writeUpTo(path string, n int) (int, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 1<<20)
	written := 0
	for written < n && err == nil {
		var k int
		k, err = f.Write(buf)
		written += k
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return written, err
}

// TestCopyWritesHeldToWriteSpace: what a pod writes into a writable COPY
// volume goes to the volume's write space (here 32 MiB), a filesystem of
// its own: a 64 MiB write stops with ENOSPC and takes no more of the
// node's disk than the write space's image already holds. A changed file of the copy is
// copied into the write space, so the copy itself keeps the bucket's bytes
// (a kept copy stays clean); the unstage drops the write space and what
// was written. Before the write space, the write filled the node's disk.
func TestCopyWritesHeldToWriteSpace(t *testing.T) {
	testenv.RequireFUSE(t)
	const space = 32 << 20
	s3, drv, c := startAll(t, "--copy-write-space", fmt.Sprint(space), "--keep-copies")
	sums := fillSource(t, s3, "copy-writes", 5)
	ctx := context.Background()
	v, err := c.Controller.CreateVolume(ctx, createReq("pv-copy-writes", map[string]string{"source": "s3://copy-writes", "mode": "COPY"}, s3.Secrets()))
	if err != nil {
		t.Fatal(err)
	}
	id := v.GetVolume().GetVolumeId()
	staging, _ := podPaths(t, drv)
	if err := stageCopy(t, c, id, staging, s3.Secrets()); err != nil {
		t.Fatal(err)
	}
	checkCopy(t, staging, sums)
	imgs, _ := filepath.Glob(filepath.Join(drv.StateDir, "copies", "*", "writes.img"))
	if len(imgs) != 1 {
		t.Fatalf("write space images: %v, want one", imgs)
	}
	data := filepath.Join(filepath.Dir(imgs[0]), "data")
	before := nodeDiskUse(t, drv.StateDir)

	const key = "shard-01/item-0001.json"
	f, err := os.OpenFile(filepath.Join(staging, key), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("changed by the pod"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(data, key)); err != nil || sha256.Sum256(got) != sums[key] {
		t.Fatalf("the copy's own file changed with the pod's write (err %v)", err)
	}

	written, werr := writeUpTo(filepath.Join(staging, "out.bin"), 64<<20)
	if !errors.Is(werr, syscall.ENOSPC) {
		t.Fatalf("writing 64 MiB into a 32 MiB write space: %d bytes written, err %v; want ENOSPC", written, werr)
	}
	t.Logf("the write stopped after %.1f MiB: %v", float64(written)/(1<<20), werr)
	if grew := nodeDiskUse(t, drv.StateDir) - before; grew > 4<<20 {
		t.Fatalf("the state directory took %d bytes more of the node's disk, past the write space's image", grew)
	}
	if _, err := os.Stat(filepath.Join(data, "out.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the pod's new file is in the copy itself: %v", err)
	}

	unstage(t, c, id, staging)
	if _, err := os.Stat(imgs[0]); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the write space is left after the unstage: %v", err)
	}
	// The kept copy is clean: the next stage shows the bucket's bytes.
	if err := stageCopy(t, c, id, staging, s3.Secrets()); err != nil {
		t.Fatal(err)
	}
	checkCopy(t, staging, sums)
	if _, err := os.Stat(filepath.Join(staging, "out.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a write outlived the unstage: %v", err)
	}
	unstage(t, c, id, staging)
}
