// Package bench is `make bench`: the figures of docs/benchmarks.md, each
// measured through the real driver binary and real FUSE mounts next to
// the systems users would pick instead (rclone's own mounts, s3fs, rclone
// copy) and the limits of the same server (plain SDK GETs, local disk),
// all in one run against one versitygw server.
//
// Every benchmark is named Benchmark<Figure>/<system>; hack/benchreport
// turns the output into the results table, the targets and the chart.
// Data sets are created once per process: a large object under large/,
// small files under small/, listing keys under list/.
package bench

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"golang.org/x/sys/unix"

	"github.com/bucket-csi/bucket-csi/internal/localenv"
	"github.com/bucket-csi/bucket-csi/test/testenv"
)

var (
	scale      = flag.Float64("bench.scale", 1, "scale the data sets (object sizes and key counts); 0.1 for a quick check")
	driverArgs = flag.String("bench.args", "", "extra flags for the bucket-csi driver, space separated (tuning runs)")
	latency    = flag.Duration("bench.latency", 0, "round-trip time added between every client and the server (a netdelay proxy), e.g. 20ms")
	hog        = flag.Bool("bench.hog", false, "run every figure with a CPU hog process beside it, on the bench's CPUs (make bench-busy)")
)

// Data set sizes at scale 1.
const (
	largeSize  = 1 << 30
	smallCount = 5000
	smallSize  = 16 << 10
	listCount  = 10000
	bucketName = "bench"
)

// fixture is the one server of the run and its data sets.
type fixture struct {
	// srv is the server as every measured client reaches it: origin, or
	// the latency proxy in front of it with -bench.latency.
	srv, origin                  *testenv.S3
	proxy                        *latencyProxy
	large                        int64
	small, list                  int
	err                          error
	largeKey, largePath, tempDir string
	// disk holds tempDir and TMPDIR (benchDisk).
	disk *benchDisk
}

var (
	fixOnce sync.Once
	fix     fixture
)

func TestMain(m *testing.M) {
	if target := os.Getenv(proxyTargetEnv); target != "" {
		os.Exit(serveProxy(target, os.Getenv(proxyRTTEnv)))
	}
	if os.Getenv(hogEnv) != "" {
		spin()
	}
	flag.Parse()
	stopHog := func() {}
	if *hog {
		var err error
		if stopHog, err = startHog(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("# every figure below ran with a CPU hog process beside it (-bench.hog)")
	}
	restoreMemory := func() {}
	if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
		var note string
		var err error
		if restoreMemory, note, err = holdMemory(); err != nil {
			stopHog()
			fmt.Fprintln(os.Stderr, "holding the VM's free memory:", err)
			os.Exit(1)
		}
		if note != "" {
			fmt.Println(note)
		}
	}
	// A configuration line of the benchmark format: hack/benchreport
	// files the results that follow under this round-trip time.
	fmt.Printf("rtt: %s\n", *latency)
	code := m.Run()
	restoreMemory()
	stopHog()
	if fix.proxy != nil {
		fix.proxy.stop()
	}
	if fix.origin != nil {
		fix.origin.Stop()
	}
	if gcsFix.srv != nil {
		gcsFix.srv.Stop()
	}
	if fix.tempDir != "" {
		_ = os.RemoveAll(fix.tempDir)
	}
	if fix.disk != nil {
		if err := fix.disk.remove(); err != nil {
			fmt.Fprintln(os.Stderr, "removing the bench's disk:", err)
		}
	}
	os.Exit(code)
}

// data returns the run's server, creating it and its data sets on first use.
func data(b *testing.B) *fixture {
	b.Helper()
	testenv.RequireFUSE(b)
	if _, err := localenv.Binary("VERSITYGW_BIN", "versitygw"); err != nil {
		testenv.Missing(b, "%v", err)
	}
	fixOnce.Do(func() { fix.err = fix.create() })
	if fix.err != nil {
		b.Fatal(fix.err)
	}
	return &fix
}

func (f *fixture) create() error {
	disk, err := attachDisk()
	if err != nil {
		return err
	}
	f.disk = disk
	dir, err := os.MkdirTemp("", "bucket-csi-bench-")
	if err != nil {
		return err
	}
	f.tempDir = dir
	if err := os.Mkdir(filepath.Join(dir, "s3"), 0o700); err != nil {
		return err
	}
	s, err := localenv.StartS3(filepath.Join(dir, "s3"), os.Getenv("BENCH_SERVER_CPU"), "")
	if err != nil {
		return err
	}
	f.origin = &testenv.S3{S3: s}
	f.srv = f.origin
	if *latency > 0 {
		if f.srv, f.proxy, err = startLatencyProxy(f.origin, *latency, os.Getenv("BENCH_SERVER_CPU")); err != nil {
			return err
		}
	}
	f.large, f.small, f.list = scaled(largeSize), int(scaled(smallCount)), int(scaled(listCount))
	f.largeKey = "large/large.bin"
	f.largePath = filepath.Join(s.Dir, bucketName, f.largeKey)
	ctx := context.Background()
	cl := f.origin.Client() // the data sets are made without the delay
	if _, err := cl.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucketName)}); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench: creating %d MiB object, %d small files, %d listing keys\n", f.large>>20, f.small, f.list)
	block := bytes.Repeat([]byte("bucket-csi benchmark data block "), (1<<20)/32)
	if err := putLarge(ctx, cl, f.largeKey, f.large, block); err != nil {
		return fmt.Errorf("creating the large object: %w", err)
	}
	if err := parallel(32, f.small, func(i int) error {
		return put(ctx, cl, smallKey(i), bytes.Repeat([]byte{byte(i)}, smallSize))
	}); err != nil {
		return fmt.Errorf("creating the small files: %w", err)
	}
	if err := parallel(32, f.list, func(i int) error {
		return put(ctx, cl, fmt.Sprintf("list/k%06d", i), []byte{byte(i)})
	}); err != nil {
		return fmt.Errorf("creating the listing keys: %w", err)
	}
	// The first figure must not compete with writing the data sets back
	// or with the server's first large read.
	unix.Sync()
	return parallel(8, int(f.large>>24)+1, func(i int) error {
		off := int64(i) << 24
		if off >= f.large {
			return nil
		}
		return rawRange(cl, f.largeKey, off, min(1<<24, f.large-off))
	})
}

// scaled is n times -bench.scale, at least 1.
func scaled(n int64) int64 { return max(1, int64(float64(n)**scale)) }

func smallKey(i int) string { return fmt.Sprintf("small/f%05d", i) }

func put(ctx context.Context, cl *s3.Client, key string, body []byte) error {
	_, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucketName), Key: aws.String(key), Body: bytes.NewReader(body), ContentLength: aws.Int64(int64(len(body)))})
	return err
}

// putLarge uploads size bytes of repeated block as a multipart object.
func putLarge(ctx context.Context, cl *s3.Client, key string, size int64, block []byte) error {
	const part = 64 << 20
	up, err := cl.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucketName), Key: aws.String(key)})
	if err != nil {
		return err
	}
	body := bytes.Repeat(block, part/len(block))
	parts := int((size + part - 1) / part)
	etags := make([]*string, parts)
	err = parallel(4, parts, func(i int) error {
		n := min(int64(part), size-int64(i)*part)
		out, err := cl.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(bucketName), Key: aws.String(key), UploadId: up.UploadId,
			PartNumber: aws.Int32(int32(i + 1)), Body: bytes.NewReader(body[:n]), ContentLength: aws.Int64(n)})
		if err == nil {
			etags[i] = out.ETag
		}
		return err
	})
	if err != nil {
		return err
	}
	completed := make([]types.CompletedPart, parts)
	for i, e := range etags {
		completed[i] = types.CompletedPart{ETag: e, PartNumber: aws.Int32(int32(i + 1))}
	}
	_, err = cl.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(bucketName), Key: aws.String(key),
		UploadId: up.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: completed}})
	return err
}

// parallel runs f(0..n-1) on workers goroutines and returns the first error.
func parallel(workers, n int, f func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}
