package copier

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkCopy is the copier's own cost per object and per byte: rclone's
// in-memory backend as the source (no network), a fresh local directory
// as the destination each time.
func BenchmarkCopy(b *testing.B) {
	for _, set := range []struct {
		name  string
		files int
		size  int
	}{
		{"files=2000,size=16KiB", 2000, 16 << 10},
		{"files=1,size=256MiB", 1, 256 << 20},
	} {
		b.Run(set.name, func(b *testing.B) {
			objs := map[string][]byte{}
			data := bytes.Repeat([]byte("c"), set.size)
			for i := 0; i < set.files; i++ {
				objs[fmt.Sprintf("d/f%05d", i)] = data
			}
			f := memFs(b, objs)
			root := b.TempDir()
			b.SetBytes(int64(set.files * set.size))
			i := 0
			for b.Loop() {
				dest := filepath.Join(root, fmt.Sprint(i))
				i++
				res, err := Copy(context.Background(), f, dest, dest+".manifest", Options{}, &Progress{})
				if err != nil || res.Downloaded != set.files {
					b.Fatalf("copied %d of %d: %v", res.Downloaded, set.files, err)
				}
				b.StopTimer()
				_ = os.RemoveAll(dest)
				b.StartTimer()
			}
			b.ReportMetric(float64(set.files*b.N)/b.Elapsed().Seconds(), "files/s")
		})
	}
}
