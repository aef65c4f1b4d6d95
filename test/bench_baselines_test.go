package test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/bucket-csi/bucket-csi/internal/localenv"
	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// external mounts bucket "bench" of srv at a new directory with another
// client (rclone mount, rclone mount2, s3fs), default flags, and returns
// the mount point.
func external(b *testing.B, srv *testenv.S3, kind string) string {
	b.Helper()
	dir := filepath.Join(b.TempDir(), "mnt")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + b.TempDir(), "AWS_ACCESS_KEY_ID=" + srv.AccessKey, "AWS_SECRET_ACCESS_KEY=" + srv.SecretKey}
	var cmd *exec.Cmd
	switch kind {
	case "rclone-mount", "rclone-mount2":
		bin, err := localenv.Binary("RCLONE_BIN", "rclone")
		if err != nil {
			testenv.Missing(b, "baseline needs rclone (make tools): %v", err)
		}
		cmd = exec.Command(bin, strings.TrimPrefix(kind, "rclone-"), ":s3,provider=Other,env_auth=true,endpoint='"+srv.Endpoint+"':bench", dir)
	case "s3fs":
		bin, err := exec.LookPath("s3fs")
		if err != nil {
			testenv.Missing(b, "baseline needs s3fs (Debian package s3fs): %v", err)
		}
		pw := filepath.Join(b.TempDir(), "passwd")
		if err := os.WriteFile(pw, []byte(srv.AccessKey+":"+srv.SecretKey), 0o600); err != nil {
			b.Fatal(err)
		}
		cmd = exec.Command(bin, "bench", dir, "-f", "-o", "url="+srv.Endpoint, "-o", "use_path_request_style", "-o", "passwd_file="+pw)
	}
	cmd.Env = env
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = exec.Command("umount", "-l", dir).Run()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	for i := 0; ; i++ {
		if ok, _ := mounted(dir); ok {
			return dir
		}
		if i > 300 {
			b.Fatalf("%s did not mount: %s", kind, log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ourMount stages bucket "bench" (or its prefix) with bucket-csi in mode.
func ourMount(b *testing.B, srv *testenv.S3, id string, args ...string) string {
	b.Helper()
	drv := testenv.StartDriver(b, srv, args...)
	c := drv.Dial(b)
	staging := filepath.Join(drv.TempDir(b), "staging")
	if err := os.MkdirAll(staging, 0o750); err != nil {
		b.Fatal(err)
	}
	if _, err := c.Node.NodeStageVolume(context.Background(), stageReq(id, staging, srv.Secrets())); err != nil {
		b.Fatal(err)
	}
	return staging
}

func readAll(b *testing.B, path string, buf []byte) int64 {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, buf)
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// BenchmarkBaselineSequentialRead: the same cold 1 MiB-block read through
// rclone's own mounts and s3fs, default flags, for the ratio with
// BenchmarkMountSequentialRead.
func BenchmarkBaselineSequentialRead(b *testing.B) {
	testenv.RequireFUSE(b)
	for _, kind := range []string{"rclone-mount", "rclone-mount2", "s3fs"} {
		b.Run(kind, func(b *testing.B) {
			srv := benchBucket(b)
			dir := external(b, srv, kind)
			buf := make([]byte, 1<<20)
			b.SetBytes(benchObjectSize)
			for b.Loop() {
				b.StopTimer()
				dropCaches()
				b.StartTimer()
				if n := readAll(b, filepath.Join(dir, "large.bin"), buf); n != benchObjectSize {
					b.Fatalf("read %d bytes", n)
				}
			}
		})
	}
}

const smallFiles, smallSize = 5000, 16 << 10

// smallBucket starts a server holding smallFiles objects of smallSize
// under small/.
func smallBucket(b *testing.B) *testenv.S3 {
	b.Helper()
	srv := testenv.StartS3(b)
	cl := srv.Client()
	ctx := context.Background()
	if _, err := cl.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("bench")}); err != nil {
		b.Fatal(err)
	}
	parallelGets(b, 32, smallFiles, func(i int) error {
		data := bytes.Repeat([]byte{byte(i)}, smallSize)
		_, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("bench"), Key: aws.String(fmt.Sprintf("small/f%05d", i)), Body: bytes.NewReader(data), ContentLength: aws.Int64(smallSize)})
		return err
	})
	return srv
}

func parallelGets(b *testing.B, workers, n int, f func(i int) error) {
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					b.Error(err)
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
}

// BenchmarkSmallFiles reads the 5,000 small files one after another
// through each mount; and copies them: a raw parallel GET loop (the
// limit), bucket-csi COPY (NodeStage), rclone copy with default flags.
func BenchmarkSmallFiles(b *testing.B) {
	testenv.RequireFUSE(b)
	srv := smallBucket(b)
	read := func(b *testing.B, dir string) {
		buf := make([]byte, 64<<10)
		b.SetBytes(smallFiles * smallSize)
		for b.Loop() {
			b.StopTimer()
			dropCaches()
			b.StartTimer()
			for i := 0; i < smallFiles; i++ {
				readAll(b, filepath.Join(dir, fmt.Sprintf("f%05d", i)), buf)
			}
		}
	}
	b.Run("read/bucket-csi-MOUNT", func(b *testing.B) { read(b, ourMount(b, srv, "v1:s3:Mps:-:bench/small")) })
	for _, kind := range []string{"rclone-mount", "s3fs"} {
		b.Run("read/"+kind, func(b *testing.B) { read(b, filepath.Join(external(b, srv, kind), "small")) })
	}
	b.Run("copy/raw-parallel-GET", func(b *testing.B) {
		cl := srv.Client()
		b.SetBytes(smallFiles * smallSize)
		for b.Loop() {
			parallelGets(b, 32, smallFiles, func(i int) error {
				out, err := cl.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String("bench"), Key: aws.String(fmt.Sprintf("small/f%05d", i))})
				if err == nil {
					_, _ = io.Copy(io.Discard, out.Body)
					out.Body.Close()
				}
				return err
			})
		}
	})
	b.Run("copy/bucket-csi-COPY", func(b *testing.B) {
		drv := testenv.StartDriver(b, srv)
		c := drv.Dial(b)
		b.SetBytes(smallFiles * smallSize)
		for b.Loop() {
			staging := filepath.Join(drv.TempDir(b), "staging")
			if err := os.MkdirAll(staging, 0o750); err != nil {
				b.Fatal(err)
			}
			if _, err := c.Node.NodeStageVolume(context.Background(), stageReq("v1:s3:Cps:-:bench/small", staging, srv.Secrets())); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			unstage(b, c, "v1:s3:Cps:-:bench/small", staging)
			b.StartTimer()
		}
	})
	b.Run("copy/rclone-copy", func(b *testing.B) {
		bin, err := localenv.Binary("RCLONE_BIN", "rclone")
		if err != nil {
			testenv.Missing(b, "baseline needs rclone (make tools): %v", err)
		}
		b.SetBytes(smallFiles * smallSize)
		for b.Loop() {
			cmd := exec.Command(bin, "copy", ":s3,provider=Other,env_auth=true,endpoint='"+srv.Endpoint+"':bench/small", b.TempDir())
			cmd.Env = []string{"HOME=" + b.TempDir(), "AWS_ACCESS_KEY_ID=" + srv.AccessKey, "AWS_SECRET_ACCESS_KEY=" + srv.SecretKey}
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("rclone copy: %v\n%s", err, out)
			}
		}
	})
}
