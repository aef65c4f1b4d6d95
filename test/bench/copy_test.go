package bench

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/bucket-csi/bucket-csi/pkg/copier"
)

// copySystem is one way of copying a prefix: start returns the timed copy
// and the untimed clean-up after it.
type copySystem struct {
	name  string
	start func(b *testing.B) (copy, undo func())
}

// benchCopy stages prefix as a COPY volume, timed, next to rclone copy
// with default flags, raw (the server's limit) and the extra systems
// (limits of the node).
func benchCopy(b *testing.B, f *fixture, prefix string, files int, bytes int64, raw func(b *testing.B), extra ...copySystem) {
	fg := newFigure(b)
	systems := []copySystem{
		{"raw-SDK", func(b *testing.B) (func(), func()) { return func() { raw(b) }, func() {} }},
		{"bucket-csi-COPY", func(b *testing.B) (func(), func()) {
			v := newVolume(b, f, 'C', prefix)
			return func() { v.stage(b) }, func() { v.unstage(b) }
		}},
		{"rclone-copy", func(b *testing.B) (func(), func()) {
			bin, dest := rclone(b), filepath.Join(f.tempDir, "rclone-copy")
			return func() {
				cmd := exec.Command(bin, "copy", rcloneRemote(f, prefix), dest)
				cmd.Env = rcloneEnv(b, f)
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("rclone copy: %v\n%s", err, out)
				}
			}, func() { _ = os.RemoveAll(dest) }
		}},
	}
	for _, sys := range append(systems, extra...) {
		fg.add(sys.name, func(b *testing.B) {
			copy, undo := sys.start(b)
			if files == 1 {
				b.SetBytes(bytes)
			}
			for b.Loop() {
				copy()
				b.StopTimer()
				undo()
				b.StartTimer()
			}
			if files > 1 {
				b.ReportMetric(float64(files*b.N)/b.Elapsed().Seconds(), "files/s")
			}
		})
	}
	fg.run()
}

// BenchmarkCopySmall: COPY NodeStage of the small files.
func BenchmarkCopySmall(b *testing.B) {
	f := data(b)
	coldSmall(f)(b, mounted{})
	// As many GETs at once as COPY's workers, each keeping its connection
	// (the SDK's default keeps 10 idle per host; a closed one costs a
	// handshake more per object behind the latency proxy).
	workers := copier.DefaultWorkers
	cl := s3.New(f.srv.Client().Options(), func(o *s3.Options) {
		o.HTTPClient = awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
			t.MaxIdleConnsPerHost = workers
		})
	})
	benchCopy(b, f, "small", f.small, int64(f.small)*smallSize, func(b *testing.B) {
		err := parallel(workers, f.small, func(i int) error {
			out, err := cl.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucketName), Key: aws.String(smallKey(i))})
			if err == nil {
				_, err = drainBlocks(out.Body)
				out.Body.Close()
			}
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}, copySystem{"local-disk", func(b *testing.B) (func(), func()) {
		dest := filepath.Join(f.tempDir, "local-create")
		return func() { createFiles(b, dest, f.small, smallSize) }, func() { _ = os.RemoveAll(dest) }
	}})
}

// createFiles is the node disk's own file-creation rate, a bound of COPY
// of small files (on loopback the driver's CPU is the tighter one,
// docs/benchmarks.md): a plain loop that creates n files of size bytes in
// dir (on the disk that holds the driver's copies and rclone copy's
// destination), writes and closes each.
func createFiles(b *testing.B, dir string, n, size int) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	body := bytes.Repeat([]byte{'c'}, size)
	for i := 0; i < n; i++ {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%05d", i)), body, 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCopyLarge: COPY NodeStage of the large object.
func BenchmarkCopyLarge(b *testing.B) {
	f := data(b)
	warmServer(b, f)
	benchCopy(b, f, "large", 1, f.large, func(b *testing.B) { rawRanged(b, f, 8, 16<<20) })
}

// BenchmarkNodeStage: the latency of NodeStageVolume per mode (COPY of an
// empty prefix: the fixed cost).
func BenchmarkNodeStage(b *testing.B) {
	fg := newFigure(b)
	f := data(b)
	for _, sys := range []string{"bucket-csi-MOUNT", "bucket-csi-MOUNT_CACHED", "bucket-csi-COPY"} {
		fg.add(sys, func(b *testing.B) {
			prefix := "large"
			if sys == "bucket-csi-COPY" {
				prefix = "empty"
			}
			v := newVolume(b, f, ourMode(sys), prefix)
			for b.Loop() {
				v.stage(b)
				b.StopTimer()
				v.unstage(b)
				b.StartTimer()
			}
		})
	}
	fg.run()
}

// BenchmarkIdleRSS: the resident memory of a FUSE server that listed the
// small files, read one and then sat idle for two seconds.
func BenchmarkIdleRSS(b *testing.B) {
	fg := newFigure(b)
	f := data(b)
	systems := []string{"bucket-csi-MOUNT", "bucket-csi-MOUNT_CACHED", "rclone-mount", "rclone-mount2", "s3fs"}
	onMounts(fg, f, systems, runOptions{prefix: "small", body: func(b *testing.B, m mounted) int64 {
		entries, err := os.ReadDir(m.dir)
		if err != nil || len(entries) != f.small {
			b.Fatalf("listed %d entries: %v", len(entries), err)
		}
		if _, err := os.ReadFile(filepath.Join(m.dir, entries[0].Name())); err != nil {
			b.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		b.ReportMetric(procMemMiB(b, m.pid, "VmRSS"), "idle-RSS-MiB")
		// Of which anonymous memory (heap, stacks); the rest is the
		// binary's pages and other file mappings.
		b.ReportMetric(procMemMiB(b, m.pid, "RssAnon"), "idle-anon-RSS-MiB")
		return 0
	}})
	fg.run()
}
