package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// coldLarge makes the next read of the large object come from the FUSE
// server: the server's copy is in its page cache, the client's is not.
func coldLarge(f *fixture) func(b *testing.B, m mounted) {
	return func(b *testing.B, m mounted) {
		warmServer(b, f)
		evict(b, filepath.Join(m.dir, "large.bin"))
	}
}

// drain reads r to its end, one Read into buf at a time, and returns the
// bytes read: a reader of len(buf) blocks. (io.CopyBuffer to io.Discard
// is not one: it hands the copy to io.Discard's ReadFrom, which reads
// with a buffer of its own of 8 KiB. Every sequential, parallel and
// small-file read and every raw GET up to the sixth full run read 8 KiB
// at a time so; docs/benchmarks.md, "The readers read 8 KiB at a time".)
func drain(r io.Reader, buf []byte) (int64, error) {
	var total int64
	for {
		n, err := r.Read(buf)
		total += int64(n)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// blockBufs are drain's buffers of 1 MiB, pooled for the readers that
// run many at once (the raw GETs, ParallelRead's readers) and used by
// readFile too.
var blockBufs = sync.Pool{New: func() any { return new([1 << 20]byte) }}

// drainBlocks is drain with a pooled buffer of 1 MiB.
func drainBlocks(r io.Reader) (int64, error) {
	buf := blockBufs.Get().(*[1 << 20]byte)
	defer blockBufs.Put(buf)
	return drain(r, buf[:])
}

// readFile reads path to the end in 1 MiB blocks.
func readFile(b *testing.B, path string) int64 {
	fh, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer fh.Close()
	n, err := drainBlocks(fh)
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// BenchmarkSeqRead: the large object read front to back in 1 MiB blocks.
func BenchmarkSeqRead(b *testing.B) {
	fg := newFigure(b)
	f := data(b)
	fg.add("raw-SDK", func(b *testing.B) {
		warmServer(b, f)
		b.SetBytes(f.large)
		for b.Loop() {
			rawRanged(b, f, 8, 16<<20)
		}
	})
	local := localCopy(b, f)
	fg.add("local-disk", func(b *testing.B) {
		b.SetBytes(f.large)
		for b.Loop() {
			b.StopTimer()
			evict(b, local)
			b.StartTimer()
			readFile(b, local)
		}
	})
	cachedWarm := func(flags ...string) func(b *testing.B) {
		return func(b *testing.B) {
			v := newVolume(b, f, 'K', "large")
			v.flags = flags
			path := filepath.Join(v.stage(b), "large.bin")
			readFile(b, path) // fills the cache
			b.SetBytes(f.large)
			for b.Loop() {
				b.StopTimer()
				dropCaches(b) // the cache file's pages too: it reads the disk like local-disk
				b.StartTimer()
				readFile(b, path)
			}
			// Reads through passthrough skip the server: say whether the
			// timed reads did (the fill is never passthrough).
			b.ReportMetric(float64(v.stats(b).PassthroughOpens), "passthrough-opens")
		}
	}
	fg.add("bucket-csi-MOUNT_CACHED-warm", cachedWarm())
	// Read-only: the kernel reads the cache file itself (FUSE passthrough).
	fg.add("bucket-csi-MOUNT_CACHED-warm-ro", cachedWarm("ro"))
	fg.add("rclone-skypilot-warm", func(b *testing.B) {
		dir, _ := mountOther(b, f, "rclone-skypilot")
		path := filepath.Join(dir, "large", "large.bin")
		readFile(b, path) // fills its cache
		b.SetBytes(f.large)
		for b.Loop() {
			b.StopTimer()
			dropCaches(b)
			b.StartTimer()
			readFile(b, path)
		}
	})
	systems := append(slices.Clone(mountSystems), "bucket-csi-MOUNT+dataset")
	onMounts(fg, f, systems, runOptions{prefix: "large", prepare: coldLarge(f), stats: true, body: func(b *testing.B, m mounted) int64 {
		b.SetBytes(f.large)
		if n := readFile(b, filepath.Join(m.dir, "large.bin")); n != f.large {
			b.Fatalf("read %d of %d bytes", n, f.large)
		}
		return f.large
	}})
	fg.run()
}

// parallelReaders is the number of readers of BenchmarkParallelRead.
const parallelReaders = 16

// BenchmarkParallelRead: 16 readers at once, each reading its own
// sixteenth of the large object front to back in 1 MiB reads (a data
// loader reading shards), from a cold client cache. Besides MB/s it
// reports the FUSE server's peak RSS: 16 read-aheads share one memory
// limit (readahead.Options.MemoryLimit).
func BenchmarkParallelRead(b *testing.B) {
	fg := newFigure(b)
	f := data(b)
	systems := []string{"bucket-csi-MOUNT", "bucket-csi-MOUNT_CACHED-cold", "rclone-mount2", "s3fs"}
	onMounts(fg, f, systems, runOptions{prefix: "large", prepare: coldLarge(f), stats: true, body: func(b *testing.B, m mounted) int64 {
		b.SetBytes(f.large)
		slice := f.large / parallelReaders
		err := parallel(parallelReaders, parallelReaders, func(i int) error {
			return readRange(filepath.Join(m.dir, "large.bin"), int64(i)*slice, slice)
		})
		if err != nil {
			b.Fatal(err)
		}
		return slice * parallelReaders
	}})
	fg.run()
}

// readRange reads n bytes of path at off in 1 MiB reads.
func readRange(path string, off, n int64) error {
	fh, err := os.Open(path)
	if err != nil {
		return err
	}
	defer fh.Close()
	got, err := drainBlocks(io.NewSectionReader(fh, off, n))
	if err == nil && got != n {
		err = fmt.Errorf("read %d of %d bytes at %d", got, n, off)
	}
	return err
}

// rawRanged fetches the large object with workers parallel ranged GETs.
func rawRanged(b *testing.B, f *fixture, workers int, chunk int64) {
	cl := f.srv.Client()
	chunks := int((f.large + chunk - 1) / chunk)
	err := parallel(workers, chunks, func(i int) error {
		off := int64(i) * chunk
		return rawRange(cl, f.largeKey, off, min(chunk, f.large-off))
	})
	if err != nil {
		b.Fatal(err)
	}
}

func rawRange(cl *s3.Client, key string, off, n int64) error {
	out, err := cl.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucketName), Key: aws.String(key),
		Range: aws.String(fmt.Sprintf("bytes=%d-%d", off, off+n-1))})
	if err != nil {
		return err
	}
	defer out.Body.Close()
	got, err := drainBlocks(out.Body)
	if err == nil && got != n {
		err = fmt.Errorf("range at %d: got %d of %d bytes", off, got, n)
	}
	return err
}

var (
	localOnce sync.Once
	localErr  error // why localCopy's copy failed
)

// localCopy is the large object on the local disk, for the disk baseline,
// synced: its writeback does not run into the figure that comes next.
func localCopy(b *testing.B, f *fixture) string {
	path := filepath.Join(f.tempDir, "local", "large.bin")
	localOnce.Do(func() {
		_ = os.MkdirAll(filepath.Dir(path), 0o755)
		src, err := os.Open(f.largePath)
		if err == nil {
			var dst *os.File
			if dst, err = os.Create(path); err == nil {
				if _, err = io.Copy(dst, src); err == nil {
					err = dst.Sync()
				}
				dst.Close()
			}
			src.Close()
		}
		if err != nil {
			_ = os.Remove(path)
			localErr = err
		}
	})
	if localErr != nil {
		b.Fatalf("copying the large object to the local disk: %v", localErr)
	}
	return path
}

// randomOffsets are n fixed pseudo-random offsets of size-byte reads.
func randomOffsets(total int64, n int, size int64) []int64 {
	r := rand.New(rand.NewPCG(1, 2))
	offs := make([]int64, n)
	for i := range offs {
		offs[i] = r.Int64N((total-size)/4096) * 4096
	}
	return offs
}

// benchRandom reads n blocks of size at random offsets, one at a time.
func benchRandom(b *testing.B, n int, size int64, unit string) {
	fg := newFigure(b)
	f := data(b)
	offs := randomOffsets(f.large, n, size)
	fg.add("raw-SDK", func(b *testing.B) {
		warmServer(b, f)
		cl := f.srv.Client()
		b.SetBytes(int64(n) * size)
		start := time.Now()
		for b.Loop() {
			for _, off := range offs {
				if err := rawRange(cl, f.largeKey, off, size); err != nil {
					b.Fatal(err)
				}
			}
		}
		if unit == "reads/s" {
			b.ReportMetric(float64(n*b.N)/time.Since(start).Seconds(), unit)
		}
	})
	onMounts(fg, f, mountSystems, runOptions{prefix: "large", prepare: coldLarge(f), body: func(b *testing.B, m mounted) int64 {
		b.SetBytes(int64(n) * size)
		fh, err := os.Open(filepath.Join(m.dir, "large.bin"))
		if err != nil {
			b.Fatal(err)
		}
		defer fh.Close()
		buf := make([]byte, size)
		start := time.Now()
		for _, off := range offs {
			if _, err := fh.ReadAt(buf, off); err != nil {
				b.Fatal(err)
			}
		}
		if unit == "reads/s" {
			b.ReportMetric(float64(n)/time.Since(start).Seconds(), unit)
		}
		return int64(n) * size
	}})
	fg.run()
}

// BenchmarkRandRead4K: 256 reads of 4 KiB at random offsets of the large
// object, one after another, from a cold client cache.
func BenchmarkRandRead4K(b *testing.B) { benchRandom(b, 256, 4<<10, "reads/s") }

// BenchmarkRandRead1M: 64 reads of 1 MiB at random offsets.
func BenchmarkRandRead1M(b *testing.B) { benchRandom(b, 64, 1<<20, "MB/s") }

// BenchmarkTTFB: open the large object and read its first byte, cold.
func BenchmarkTTFB(b *testing.B) {
	fg := newFigure(b)
	f := data(b)
	fg.add("raw-SDK", func(b *testing.B) {
		cl := f.srv.Client()
		for b.Loop() {
			if err := rawRange(cl, f.largeKey, 0, 1); err != nil {
				b.Fatal(err)
			}
		}
	})
	onMounts(fg, f, mountSystems, runOptions{prefix: "large", prepare: coldLarge(f), body: func(b *testing.B, m mounted) int64 {
		fh, err := os.Open(filepath.Join(m.dir, "large.bin"))
		if err != nil {
			b.Fatal(err)
		}
		defer fh.Close()
		if _, err := fh.Read(make([]byte, 1)); err != nil {
			b.Fatal(err)
		}
		return 1
	}})
	fg.run()
}
