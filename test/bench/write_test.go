package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

const writeSize = 256 << 20

var written atomic.Int64

// writeFile writes size bytes to a new file at path in 1 MiB blocks and
// closes it. It opens the file write-only, as cp, tar, shell redirections
// and Python's open(path, "wb") do (Go's os.Create opens it read-write).
func writeFile(b *testing.B, path string, size int64) {
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o666)
	if err != nil {
		b.Fatal(err)
	}
	block := bytes.Repeat([]byte("written by the benchmark, 32 B.\n"), (1<<20)/32)
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
	f := data(b)
	size := scaled(writeSize)
	b.Run("local-disk", func(b *testing.B) {
		dir := b.TempDir()
		b.SetBytes(size)
		for b.Loop() {
			writeFile(b, filepath.Join(dir, "w.bin"), size)
		}
	})
	systems := []string{"bucket-csi-MOUNT_CACHED", "bucket-csi-MOUNT_CACHED+checkpoint", "bucket-csi-MOUNT", "rclone-mount", "s3fs", "rclone-skypilot"}
	onMounts(b, f, systems, runOptions{prepare: listed, body: func(b *testing.B, m mounted) int64 {
		b.SetBytes(size)
		key := fmt.Sprintf("w-%d.bin", written.Add(1))
		writeFile(b, filepath.Join(m.dir, key), size)
		b.StopTimer()
		until := untilInBucket(b, f, key, size)
		b.ReportMetric(until.Seconds(), "s-until-in-bucket")
		b.StartTimer()
		return size
	}})
}
