package copier

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	rfs "github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/hash"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
)

var listedKeys = flag.Int("copier.keys", 2_000_000, "objects listed by TestCopyPlansHugeListingInBoundedMemory")

// synthFs is an rclone Fs whose listing is generated: n objects of size
// bytes each, 1000 per page, as a store's paged listing arrives. Nothing
// can be read from it.
type synthFs struct {
	n    int
	size int64
	ft   *rfs.Features
}

func newSynthFs(n int, size int64) *synthFs {
	f := &synthFs{n: n, size: size}
	f.ft = (&rfs.Features{}).Fill(context.Background(), f)
	f.ft.ListR = f.ListR
	return f
}

func (f *synthFs) Name() string                        { return "synth" }
func (f *synthFs) Root() string                        { return "" }
func (f *synthFs) String() string                      { return "synth" }
func (f *synthFs) Precision() time.Duration            { return time.Second }
func (f *synthFs) Hashes() hash.Set                    { return hash.Set(hash.None) }
func (f *synthFs) Features() *rfs.Features             { return f.ft }
func (f *synthFs) Mkdir(context.Context, string) error { return nil }
func (f *synthFs) Rmdir(context.Context, string) error { return nil }
func (f *synthFs) List(context.Context, string) (rfs.DirEntries, error) {
	return nil, errors.New("synthFs lists recursively only")
}
func (f *synthFs) NewObject(context.Context, string) (rfs.Object, error) {
	return nil, rfs.ErrorObjectNotFound
}
func (f *synthFs) Put(context.Context, io.Reader, rfs.ObjectInfo, ...rfs.OpenOption) (rfs.Object, error) {
	return nil, errors.New("read-only")
}

// ListR sends the objects in pages, in a store's (byte) order of keys.
func (f *synthFs) ListR(_ context.Context, _ string, callback rfs.ListRCallback) error {
	page := make(rfs.DirEntries, 0, 1000)
	for i := 0; i < f.n; i++ {
		page = append(page, &synthObject{f: f, remote: fmt.Sprintf("shard-%03d/part-%08d.bin", i%1000, i)})
		if len(page) == cap(page) || i == f.n-1 {
			if err := callback(page); err != nil {
				return err
			}
			page = make(rfs.DirEntries, 0, 1000)
		}
	}
	return nil
}

var synthTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

type synthObject struct {
	f      *synthFs
	remote string
}

func (o *synthObject) String() string                    { return o.remote }
func (o *synthObject) Remote() string                    { return o.remote }
func (o *synthObject) ModTime(context.Context) time.Time { return synthTime }
func (o *synthObject) Size() int64                       { return o.f.size }
func (o *synthObject) Fs() rfs.Info                      { return o.f }
func (o *synthObject) Hash(context.Context, hash.Type) (string, error) {
	return "", hash.ErrUnsupported
}
func (o *synthObject) Storable() bool                              { return true }
func (o *synthObject) SetModTime(context.Context, time.Time) error { return rfs.ErrorCantSetModTime }
func (o *synthObject) Open(context.Context, ...rfs.OpenOption) (io.ReadCloser, error) {
	return nil, errors.New("synthetic object")
}
func (o *synthObject) Update(context.Context, io.Reader, rfs.ObjectInfo, ...rfs.OpenOption) error {
	return errors.New("read-only")
}
func (o *synthObject) Remove(context.Context) error { return errors.New("read-only") }

// peakHeap samples the heap in use until stop is called, and returns the
// highest sample.
func peakHeap() (stop func() uint64) {
	var mu sync.Mutex
	var peak uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	sample := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		mu.Lock()
		peak = max(peak, ms.HeapInuse)
		mu.Unlock()
	}
	go func() {
		defer close(finished)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				sample()
			case <-done:
				return
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		sample()
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}

// TestCopyPlansHugeListingInBoundedMemory: a bucket of millions of keys
// (2,000,000 by default, -copier.keys=10000000 for the figure;
// 200,000 with -short) whose data cannot fit the node is listed and
// planned with the heap under a fixed bound, and refused with
// fault.Exhausted and both figures.
func TestCopyPlansHugeListingInBoundedMemory(t *testing.T) {
	const bound = 150 << 20
	const size = 1 << 30
	n := *listedKeys
	if testing.Short() {
		n = min(n, 200_000)
	}
	f := newSynthFs(n, size)
	root := t.TempDir()
	runtime.GC()
	stop := peakHeap()
	start := time.Now()
	res, err := Copy(context.Background(), f, filepath.Join(root, "data"), filepath.Join(root, "manifest"), Options{}, &Progress{})
	took := time.Since(start)
	peak := stop()
	t.Logf("%d keys planned in %.1f s, peak heap in use %.1f MiB", n, took.Seconds(), float64(peak)/(1<<20))
	var need int64
	if m := regexp.MustCompile(`needs (\d+) bytes but only \d+ bytes are free`).FindStringSubmatch(fmt.Sprint(err)); m != nil {
		need, _ = strconv.ParseInt(m[1], 10, 64)
	}
	// The files, and the manifest lines they would add.
	if !errors.Is(err, fault.Exhausted) || need < int64(n)*size {
		t.Fatalf("Copy = %v, want fault.Exhausted naming at least %d bytes needed and the free bytes", err, int64(n)*size)
	}
	if res.Files != n || res.DownloadedBytes != int64(n)*size {
		t.Fatalf("planned %d files, %d bytes; want %d files", res.Files, res.DownloadedBytes, n)
	}
	if peak > bound {
		t.Fatalf("peak heap in use %d MiB, over the bound of %d MiB", peak>>20, bound>>20)
	}
}
