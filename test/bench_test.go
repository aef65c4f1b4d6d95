package test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/bucket-csi/bucket-csi/test/testenv"
)

const benchObjectSize = 256 << 20

// benchBucket starts a server holding one benchObjectSize object.
func benchBucket(b *testing.B) *testenv.S3 {
	b.Helper()
	srv := testenv.StartS3(b)
	ctx := context.Background()
	cl := srv.Client()
	if _, err := cl.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("bench")}); err != nil {
		b.Fatal(err)
	}
	data := bytes.Repeat([]byte("bucket-csi benchmark data block "), benchObjectSize/32)
	if _, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("bench"), Key: aws.String("large.bin"), Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data)))}); err != nil {
		b.Fatal(err)
	}
	return srv
}

func dropCaches() { _ = os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0o200) }

// BenchmarkRawGet is the baseline: the same object fetched by a plain SDK
// client with 8 parallel 16 MiB ranges.
func BenchmarkRawGet(b *testing.B) {
	srv := benchBucket(b)
	cl := srv.Client()
	ctx := context.Background()
	const chunk = 16 << 20
	b.SetBytes(benchObjectSize)
	for b.Loop() {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for off := 0; off < benchObjectSize; off += chunk {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				out, err := cl.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("bench"), Key: aws.String("large.bin"), Range: aws.String(fmt.Sprintf("bytes=%d-%d", off, off+chunk-1))})
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, out.Body)
				out.Body.Close()
			}()
		}
		wg.Wait()
	}
}

// BenchmarkMountSequentialRead reads the object through a MOUNT volume in
// 1 MiB blocks, cold (page cache dropped), with rclone's default single
// stream and with parallel chunk streams.
func BenchmarkMountSequentialRead(b *testing.B) {
	testenv.RequireFUSE(b)
	for _, cfg := range []struct {
		name string
		args []string
	}{
		{"default", nil},
		{"streams=4,chunk=16MiB", []string{"--read-chunk-streams", "4", "--read-chunk-size", "16777216"}},
		{"streams=8,chunk=16MiB", []string{"--read-chunk-streams", "8", "--read-chunk-size", "16777216"}},
	} {
		b.Run(cfg.name, func(b *testing.B) {
			srv := benchBucket(b)
			drv := testenv.StartDriver(b, srv, cfg.args...)
			c := drv.Dial(b)
			staging := filepath.Join(drv.TempDir(b), "staging")
			if err := os.MkdirAll(staging, 0o750); err != nil {
				b.Fatal(err)
			}
			if _, err := c.Node.NodeStageVolume(context.Background(), stageReq("v1:s3:Mps:-:bench", staging, srv.Secrets())); err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 1<<20)
			b.SetBytes(benchObjectSize)
			for b.Loop() {
				b.StopTimer()
				dropCaches()
				b.StartTimer()
				f, err := os.Open(filepath.Join(staging, "large.bin"))
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, buf)
				f.Close()
				if err != nil || n != benchObjectSize {
					b.Fatalf("read %d bytes: %v", n, err)
				}
			}
		})
	}
}

func stageReq(id, staging string, secrets map[string]string) *csi.NodeStageVolumeRequest {
	return &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: testenv.MountCap(rwx), Secrets: secrets}
}

func unstage(b *testing.B, c testenv.Clients, id, staging string) {
	b.Helper()
	if _, err := c.Node.NodeUnstageVolume(context.Background(), &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
		b.Fatal(err)
	}
}
