package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// coldSmall drops the client's caches and warms the server's copies of the
// small files.
func coldSmall(f *fixture) func(b *testing.B, m mounted) {
	return func(b *testing.B, m mounted) {
		dropCaches(b)
		buf := make([]byte, smallSize)
		for i := 0; i < f.small; i++ {
			fh, err := os.Open(filepath.Join(f.srv.Dir, bucketName, smallKey(i)))
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.ReadFull(fh, buf)
			fh.Close()
		}
	}
}

// readSmallFiles opens and reads the n small files of dir one after
// another in name order, checking each one's size; it returns the bytes.
func readSmallFiles(b *testing.B, dir string, n int) int64 {
	buf := make([]byte, 64<<10)
	var total int64
	for i := 0; i < n; i++ {
		fh, err := os.Open(filepath.Join(dir, fmt.Sprintf("f%05d", i)))
		if err != nil {
			b.Fatal(err)
		}
		got, err := drain(fh, buf)
		fh.Close()
		if err != nil || got != smallSize {
			b.Fatalf("read %d bytes of f%05d: %v", got, i, err)
		}
		total += got
	}
	return total
}

// BenchmarkSmallFiles: every small file opened and read to the end, one
// after another, as a training loop or a build reads its inputs.
func BenchmarkSmallFiles(b *testing.B) {
	fg := newFigure(b)
	f := data(b)
	fg.add("raw-SDK", func(b *testing.B) {
		coldSmall(f)(b, mounted{})
		cl := f.srv.Client()
		buf := make([]byte, 64<<10) // as readSmallFiles
		start := time.Now()
		for b.Loop() {
			for i := 0; i < f.small; i++ {
				out, err := cl.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucketName), Key: aws.String(smallKey(i))})
				if err != nil {
					b.Fatal(err)
				}
				_, _ = drain(out.Body, buf)
				out.Body.Close()
			}
		}
		b.ReportMetric(float64(f.small*b.N)/time.Since(start).Seconds(), "files/s")
	})
	onMounts(fg, f, mountSystems, runOptions{prefix: "small", prepare: coldSmall(f), body: func(b *testing.B, m mounted) int64 {
		start := time.Now()
		total := readSmallFiles(b, m.dir, f.small)
		b.ReportMetric(float64(f.small)/time.Since(start).Seconds(), "files/s")
		return total
	}})
	fg.run()
}

// BenchmarkListDir: `ls -l` of the listing keys on a new mount (nothing
// cached), the first thing a user does with a volume.
func BenchmarkListDir(b *testing.B) {
	fg := newFigure(b)
	f := data(b)
	fg.add("raw-SDK", func(b *testing.B) {
		cl := f.srv.Client()
		for b.Loop() {
			p := s3.NewListObjectsV2Paginator(cl, &s3.ListObjectsV2Input{Bucket: aws.String(bucketName), Prefix: aws.String("list/")})
			n := 0
			for p.HasMorePages() {
				page, err := p.NextPage(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				n += len(page.Contents)
			}
			if n != f.list {
				b.Fatalf("listed %d of %d keys", n, f.list)
			}
		}
	})
	onMounts(fg, f, mountSystems, runOptions{prefix: "list", fresh: true, prepare: func(b *testing.B, m mounted) { dropCaches(b) },
		body: func(b *testing.B, m mounted) int64 {
			cmd := exec.Command("ls", "-l", "--color=never", m.dir)
			cmd.Env = []string{"LC_ALL=C"}
			out, err := cmd.Output()
			if err != nil {
				b.Fatalf("ls -l: %v", err)
			}
			if lines := countLines(out); lines != f.list+1 { // plus "total"
				b.Fatalf("ls -l printed %d lines for %d keys", lines, f.list)
			}
			return 0
		}})
	fg.run()
}

func countLines(out []byte) int {
	n := 0
	for _, c := range out {
		if c == '\n' {
			n++
		}
	}
	return n
}
