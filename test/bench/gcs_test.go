package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/bucket-csi/bucket-csi/internal/localenv"
	"github.com/bucket-csi/bucket-csi/pkg/store/gcsstore"
	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// The GCS figures put bucket-csi's GCS store and gcsfuse (Google's own
// engine, the one GKE's Cloud Storage FUSE CSI driver runs) on the same
// fake-gcs-server, with the same data: a large object (a quarter of the
// S3 one: the emulator keeps it in memory) and the small files. The
// emulator runs on the server's CPU (BENCH_SERVER_CPU), as the S3 server
// does, and is the bound of both columns; the figures compare the
// clients, never GCS itself. They run without the latency proxy (-bench.latency
// applies to the S3 server only).

// gcsFixture is the emulator and its data sets, made on first use.
type gcsFixture struct {
	srv   *localenv.Server
	large int64
	small int
	err   error
}

var (
	gcsOnce sync.Once
	gcsFix  gcsFixture
)

// gcsData returns the emulator with its data, starting it on first use
// (TestMain stops it).
func gcsData(b *testing.B) *gcsFixture {
	b.Helper()
	data(b) // FUSE and the S3 fixture the driver runs with
	gcsOnce.Do(func() { gcsFix.err = gcsFix.create() })
	if gcsFix.err != nil {
		b.Fatal(gcsFix.err)
	}
	return &gcsFix
}

func (g *gcsFixture) create() error {
	srv, err := localenv.StartGCS(os.Getenv("BENCH_SERVER_CPU"))
	if err != nil {
		return err
	}
	g.srv = srv
	g.large, g.small = scaled(largeSize/4), int(scaled(smallCount))
	st, err := gcsstore.Open(gcsstore.Config{Endpoint: srv.Endpoint, ProjectID: localenv.GCSProject}, nil)
	if err != nil {
		return err
	}
	ctx := context.Background()
	if err := st.CreateBucket(ctx, bucketName); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench: GCS emulator: %d MiB object, %d small files\n", g.large>>20, g.small)
	block := bytes.Repeat([]byte("bucket-csi benchmark data block "), (1<<20)/32)
	large := bytes.Repeat(block, int(g.large>>20)+1)[:g.large]
	if err := st.PutObject(ctx, bucketName, "large/large.bin", large); err != nil {
		return fmt.Errorf("creating the large object: %w", err)
	}
	return parallel(16, g.small, func(i int) error {
		return st.PutObject(ctx, bucketName, smallKey(i), bytes.Repeat([]byte{byte(i)}, smallSize))
	})
}

// gcsSystems are the systems of the GCS figures.
var gcsSystems = []string{"bucket-csi-MOUNT", "gcsfuse"}

// mountGCS mounts the emulator's bench bucket with system and returns the
// bucket's root directory.
func mountGCS(b *testing.B, g *gcsFixture, system string) string {
	b.Helper()
	if system == "gcsfuse" {
		return mountGCSFuse(b, g)
	}
	drv := testenv.StartDriver(b, data(b).srv, "--log-level", "info",
		"--gcs-endpoint", g.srv.Endpoint, "--gcs-project", localenv.GCSProject)
	v := &ourVolume{drv: drv, c: drv.Dial(b), id: "v1:gcs:Mps:-:" + bucketName}
	return v.stage(b)
}

// mountGCSFuse mounts the bucket with gcsfuse at its defaults (no file
// cache), anonymous, on the emulator's JSON API.
func mountGCSFuse(b *testing.B, g *gcsFixture) string {
	b.Helper()
	bin, err := localenv.Binary("GCSFUSE_BIN", "gcsfuse")
	if err != nil {
		testenv.Missing(b, "baseline needs gcsfuse (make bench-tools builds it): %v", err)
	}
	dir := filepath.Join(b.TempDir(), "mnt")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	// --enable-hns=false: the storage-layout call it would make first is
	// gRPC to the control API, which the emulator lacks.
	cmd := exec.Command(bin, "--foreground", "--anonymous-access", "--implicit-dirs", "--enable-hns=false",
		"--custom-endpoint", g.srv.Endpoint, "--log-severity", "warning", bucketName, dir)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + b.TempDir()}
	runMount(b, cmd, dir, "gcsfuse", 30*time.Second)
	return dir
}

// BenchmarkGCSSeqRead: the emulator's large object read front to back in
// 1 MiB blocks, from a cold client cache.
func BenchmarkGCSSeqRead(b *testing.B) {
	fg := newFigure(b)
	g := gcsData(b)
	for _, sys := range gcsSystems {
		fg.add(sys, func(b *testing.B) {
			path := filepath.Join(mountGCS(b, g, sys), "large", "large.bin")
			b.SetBytes(g.large)
			for b.Loop() {
				b.StopTimer()
				evict(b, path)
				b.StartTimer()
				if n := readFile(b, path); n != g.large {
					b.Fatalf("read %d of %d bytes", n, g.large)
				}
			}
		})
	}
	fg.run()
}

// BenchmarkGCSSmallFiles: every small file of the emulator opened and
// read to the end, one after another, on a new mount.
func BenchmarkGCSSmallFiles(b *testing.B) {
	fg := newFigure(b)
	g := gcsData(b)
	for _, sys := range gcsSystems {
		fg.add(sys, func(b *testing.B) {
			var files int
			for b.Loop() {
				b.StopTimer()
				dir := filepath.Join(mountGCS(b, g, sys), "small")
				dropCaches(b)
				b.StartTimer()
				readSmallFiles(b, dir, g.small)
				files += g.small
			}
			// Elapsed counts the timed reads only, not the mounts.
			b.ReportMetric(float64(files)/b.Elapsed().Seconds(), "files/s")
		})
	}
	fg.run()
}
