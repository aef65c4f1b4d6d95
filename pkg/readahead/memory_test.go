package readahead

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/object"
)

// capFs is an in-memory rclone Fs with dirs directories of small files
// and big files of bigSize bytes, and the contents by name.
func capFs(t *testing.T, dirs, small, big int, bigSize int) (fs.Fs, map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	f, err := fs.NewFs(ctx, fmt.Sprintf(":memory:cap%d", time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{}
	rnd := rand.New(rand.NewPCG(1, 2))
	put := func(name string, n int) {
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(rnd.Uint32())
		}
		src := object.NewStaticObjectInfo(name, time.Now(), int64(n), true, nil, f)
		if _, err := f.Put(ctx, bytes.NewReader(data), src); err != nil {
			t.Fatal(err)
		}
		want[name] = data
	}
	for d := 0; d < dirs; d++ {
		for i := 0; i < small; i++ {
			put(fmt.Sprintf("d%d/s%03d", d, i), 1000+rnd.IntN(60<<10))
		}
	}
	for i := 0; i < big; i++ {
		put(fmt.Sprintf("big/b%02d", i), bigSize+i)
	}
	return f, want
}

// readAllWith reads rc to its end in reads of n bytes and closes it.
func readAllWith(rc io.ReadCloser, err error, n int) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var out []byte
	buf := make([]byte, n)
	for {
		m, err := rc.Read(buf)
		out = append(out, buf[:m]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

// TestMemoryLimitHeldByManyReaders: many readers in parallel (streaming
// big files and walking directories of small ones, which are fetched
// ahead) against one Fs never hold more than its MemoryLimit, read every
// byte right, and leave nothing held once closed and released.
func TestMemoryLimitHeldByManyReaders(t *testing.T) {
	const limit = 2 << 20
	base, want := capFs(t, 4, 40, 12, 1<<20)
	w := Wrap(base, Options{MemoryLimit: limit, BlockSize: 256 << 10, Window: 4, FirstBlock: 64 << 10, SmallBudget: 1 << 20})
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var objs []fs.Object
			if g%2 == 0 {
				for i := 0; i < 4; i++ {
					o, err := w.NewObject(ctx, fmt.Sprintf("big/b%02d", (g+i)%12))
					if err != nil {
						errs <- err
						return
					}
					objs = append(objs, o)
				}
			} else {
				entries, err := w.List(ctx, fmt.Sprintf("d%d", g%4))
				if err != nil {
					errs <- err
					return
				}
				for _, e := range entries {
					objs = append(objs, e.(fs.Object))
				}
			}
			for i, o := range objs {
				got, err := readAllWith2(ctx, o, []int{4096, 64 << 10, 300 << 10}[(g+i)%3])
				if err != nil {
					errs <- fmt.Errorf("%s: %w", o.Remote(), err)
					return
				}
				if !bytes.Equal(got, want[o.Remote()]) {
					errs <- fmt.Errorf("%s: %d bytes read, content differs", o.Remote(), len(got))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	_, peak := w.MemoryHeld()
	if peak > limit {
		t.Fatalf("peak %d bytes held > limit %d", peak, limit)
	}
	if peak < limit/2 {
		t.Fatalf("peak %d bytes: 16 readers did not even use half the limit (%d); read-ahead is not working", peak, limit)
	}
	w.Release()
	// Small files still being fetched are cancelled by Release; each
	// gives its bytes back when its fetch ends.
	now, _ := w.MemoryHeld()
	for deadline := time.Now().Add(5 * time.Second); now != 0 && time.Now().Before(deadline); now, _ = w.MemoryHeld() {
		time.Sleep(10 * time.Millisecond)
	}
	if now != 0 {
		t.Fatalf("%d bytes still counted 5 s after every reader closed and Release", now)
	}
	t.Logf("peak %d of %d bytes", peak, limit)
}

// TestMemoryLimitNoneReadsDirect: with no read-ahead memory at all every
// read still returns the right bytes, one GET each, and nothing is held.
func TestMemoryLimitNoneReadsDirect(t *testing.T) {
	src := newSource(3<<20 + 7)
	r := NewReader(context.Background(), src.open, 0, int64(len(src.data)), Options{MemoryLimit: -1})
	got, err := readAllWith(r, nil, 256<<10)
	if err != nil || !bytes.Equal(got, src.data) {
		t.Fatalf("direct reads: %v, %d bytes, equal %v", err, len(got), bytes.Equal(got, src.data))
	}
	if n, want := len(src.ranges), (len(src.data)+(256<<10)-1)/(256<<10); n != want {
		t.Fatalf("%d GETs, want one per read (%d)", n, want)
	}
	if now, peak := r.mem.held(); now != 0 || peak != 0 {
		t.Fatalf("held %d (peak %d) with no memory", now, peak)
	}
	base, want := capFs(t, 1, 10, 1, 2<<20)
	w := Wrap(base, Options{MemoryLimit: -1})
	entries, err := w.List(context.Background(), "d0")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		got, err := readAllWith2(context.Background(), e.(fs.Object), 64<<10)
		if err != nil || !bytes.Equal(got, want[e.Remote()]) {
			t.Fatalf("%s: %v", e.Remote(), err)
		}
	}
	if _, peak := w.MemoryHeld(); peak != 0 {
		t.Fatalf("peak %d with no memory", peak)
	}
}

// readAllWith2 opens o and reads it with readAllWith.
func readAllWith2(ctx context.Context, o fs.Object, n int) ([]byte, error) {
	rc, err := o.Open(ctx)
	return readAllWith(rc, err, n)
}
