package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

const writeSize = 256 << 20

var written atomic.Int64

// writeBlock is what writeFile writes: 1 MiB.
func writeBlock() []byte {
	return bytes.Repeat([]byte("written by the benchmark, 32 B.\n"), (1<<20)/32)
}

// writeFile writes size bytes to a new file at path in pieces of block
// and closes it. It opens the file write-only, as cp, tar, shell
// redirections and Python's open(path, "wb") do (Go's os.Create opens it
// read-write).
func writeFile(b *testing.B, path string, size int64, block []byte) {
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o666)
	if err != nil {
		b.Fatal(err)
	}
	for n := int64(0); n < size; n += int64(len(block)) {
		if _, err := fh.Write(block[:min(int64(len(block)), size-n)]); err != nil {
			b.Fatal(err)
		}
	}
	if err := fh.Close(); err != nil {
		b.Fatal(err)
	}
}

// untilInBucket polls the bucket until key holds size bytes and returns
// how long that took.
func untilInBucket(b *testing.B, f *fixture, key string, size int64) time.Duration {
	cl := f.origin.Client() // the bucket itself, without the delay
	start := time.Now()
	for {
		out, err := cl.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(bucketName), Key: aws.String(key)})
		if err == nil && aws.ToInt64(out.ContentLength) == size {
			return time.Since(start)
		}
		if time.Since(start) > 2*time.Minute {
			b.Fatalf("%s not in the bucket after 2 minutes (last error %v)", key, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// listed reads the mount's directory (untimed): every system is mounted
// afresh for each run, and the write's lookup of its new name would
// otherwise time the directory's first listing too (5-8 ms: the open took
// 6.5-11 ms of the 64 MiB write's 20-30 ms on MOUNT_CACHED at 0 ms,
// docs/benchmarks.md), which the ListDir figure measures on its own.
func listed(b *testing.B, m mounted) {
	if _, err := os.ReadDir(m.dir); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkCachedWrite: a new file written through the mount in 1 MiB
// blocks and closed (timed), then the time until the bucket holds all of
// it (MOUNT_CACHED uploads after --write-back, 1 s by default). The
// directory is listed first, untimed (listed).
func BenchmarkCachedWrite(b *testing.B) {
	fg := newFigure(b)
	f := data(b)
	size, block := scaled(writeSize), writeBlock()
	fg.add("local-disk", func(b *testing.B) {
		dir := b.TempDir()
		b.SetBytes(size)
		for b.Loop() {
			writeFile(b, filepath.Join(dir, "w.bin"), size, block)
		}
	})
	systems := []string{"bucket-csi-MOUNT_CACHED", "bucket-csi-MOUNT_CACHED+checkpoint", "bucket-csi-MOUNT", "rclone-mount", "s3fs", "rclone-skypilot"}
	onMounts(fg, f, systems, runOptions{prepare: listed, body: func(b *testing.B, m mounted) int64 {
		b.SetBytes(size)
		key := fmt.Sprintf("w-%d.bin", written.Add(1))
		writeFile(b, filepath.Join(m.dir, key), size, block)
		b.StopTimer()
		until := untilInBucket(b, f, key, size)
		b.ReportMetric(until.Seconds(), "s-until-in-bucket")
		b.StartTimer()
		return size
	}})
	fg.run()
}

// writesInRow is how many files CachedWrites writes one after another.
const writesInRow = 4

// BenchmarkCachedWrites: writesInRow new files of CachedWrite's size
// written one after another through the mount, each in 1 MiB blocks and
// closed (timed: a checkpoint of several files, where what the server
// does after one file's close runs beside the next file), then the time
// until the bucket holds the last. The directory is listed first,
// untimed (listed).
func BenchmarkCachedWrites(b *testing.B) {
	fg := newFigure(b)
	f := data(b)
	size, block := scaled(writeSize), writeBlock()
	fg.add("local-disk", func(b *testing.B) {
		dir := b.TempDir()
		b.SetBytes(writesInRow * size)
		for b.Loop() {
			for range writesInRow {
				writeFile(b, filepath.Join(dir, fmt.Sprintf("w-%d.bin", written.Add(1))), size, block)
			}
		}
	})
	systems := []string{"bucket-csi-MOUNT_CACHED", "rclone-skypilot"}
	onMounts(fg, f, systems, runOptions{prepare: listed, body: func(b *testing.B, m mounted) int64 {
		b.SetBytes(writesInRow * size)
		var key string
		for range writesInRow {
			key = fmt.Sprintf("w-%d.bin", written.Add(1))
			writeFile(b, filepath.Join(m.dir, key), size, block)
		}
		b.StopTimer()
		until := untilInBucket(b, f, key, size)
		b.ReportMetric(until.Seconds(), "s-until-in-bucket")
		b.StartTimer()
		return writesInRow * size
	}})
	fg.run()
}

// smallWrites is how many files SmallWrites writes (scaled): fewer than
// the small files read, as the peers that upload inside each close take
// round trips per file (s3fs about 230 ms a file at 20 ms).
const smallWrites = 1000

// writeSmallFiles writes n new files of smallSize bytes into dir one after
// another, each opened write-only, written in one call and closed.
func writeSmallFiles(b *testing.B, dir string, n int) {
	block := writeBlock()[:smallSize]
	for i := 0; i < n; i++ {
		writeFile(b, filepath.Join(dir, fmt.Sprintf("w%05d", i)), smallSize, block)
	}
}

// untilListed polls the bucket until n files are listed under prefix
// and returns how long that took.
func untilListed(b *testing.B, f *fixture, prefix string, n int) time.Duration {
	cl := f.origin.Client() // the bucket itself, without the delay
	start := time.Now()
	for {
		got := 0
		p := s3.NewListObjectsV2Paginator(cl, &s3.ListObjectsV2Input{Bucket: aws.String(bucketName), Prefix: aws.String(prefix)})
		var err error
		for p.HasMorePages() && err == nil {
			var page *s3.ListObjectsV2Output
			if page, err = p.NextPage(context.Background()); err == nil {
				for _, o := range page.Contents {
					if !strings.HasSuffix(aws.ToString(o.Key), "/") { // s3fs's directory object
						got++
					}
				}
			}
		}
		if err == nil && got == n {
			return time.Since(start)
		}
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("%d of %d objects under %s in the bucket after 5 minutes (last error %v)", got, n, prefix, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// passthroughWriters is how many write-capable passthrough opens our FUSE
// server has made so far (in SmallWrites one per passthrough writer it
// granted); 0 for the other systems.
func passthroughWriters(b *testing.B, m mounted) int64 {
	b.Helper()
	if m.vol == nil {
		return 0
	}
	return m.vol.stats(b).PassthroughWrites
}

// BenchmarkSmallWrites: new files of 16 KiB written one by one into a new
// directory and closed (timed), as a preprocessing step or a logger writes
// its outputs, then the time until the bucket lists every one (untimed:
// MOUNT_CACHED and SkyPilot's flags upload after the close, rclone mount
// and s3fs inside it; the small-files profile uploads 8 at a time), with
// the FUSE server's CPU over both, and on our systems how many of the
// files got a passthrough writer (pt-writers). The mount's root is listed
// first, untimed (listed).
func BenchmarkSmallWrites(b *testing.B) {
	fg := newFigure(b)
	f := data(b)
	n := int(scaled(smallWrites))
	fg.add("local-disk", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			dir := filepath.Join(b.TempDir(), fmt.Sprintf("sw-%d", written.Add(1)))
			if err := os.Mkdir(dir, 0o755); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			writeSmallFiles(b, dir, n)
		}
		b.SetBytes(int64(n) * smallSize)
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "files/s")
	})
	systems := []string{"bucket-csi-MOUNT_CACHED", "bucket-csi-MOUNT_CACHED+small-files", "bucket-csi-MOUNT", "rclone-mount", "s3fs", "rclone-skypilot"}
	onMounts(fg, f, systems, runOptions{prepare: listed, stats: true, body: func(b *testing.B, m mounted) int64 {
		b.StopTimer()
		dir := fmt.Sprintf("sw-%d", written.Add(1))
		if err := os.Mkdir(filepath.Join(m.dir, dir), 0o755); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(n) * smallSize)
		w0 := passthroughWriters(b, m)
		b.StartTimer()
		start := time.Now()
		writeSmallFiles(b, filepath.Join(m.dir, dir), n)
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "files/s")
		b.StopTimer()
		b.ReportMetric(untilListed(b, f, dir+"/", n).Seconds(), "s-until-in-bucket")
		if m.vol != nil {
			b.ReportMetric(float64(passthroughWriters(b, m)-w0), "pt-writers")
		}
		b.StartTimer()
		return int64(n) * smallSize
	}})
	fg.run()
}
