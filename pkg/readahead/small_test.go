package readahead

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"testing"
	"time"

	_ "github.com/rclone/rclone/backend/memory"
	"github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/object"
)

// memoryFs is rclone's in-memory backend holding n small files d/fNN
// (content: their name repeated) and one large file.
func memoryFs(t *testing.T, n int) fs.Fs {
	t.Helper()
	ctx := context.Background()
	f, err := fs.NewFs(ctx, fmt.Sprintf(":memory:bucket%d", time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	put := func(name string, data []byte) {
		src := object.NewStaticObjectInfo(name, time.Now(), int64(len(data)), true, nil, f)
		if _, err := f.Put(ctx, bytes.NewReader(data), src); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		put(fmt.Sprintf("d/f%02d", i), content(i))
	}
	put("d/zz-large", bytes.Repeat([]byte("L"), 1<<20))
	return f
}

func content(i int) []byte { return bytes.Repeat([]byte(fmt.Sprintf("f%02d;", i)), 100) }

func listed(t *testing.T, w *Fs) []*Object {
	t.Helper()
	entries, err := w.List(context.Background(), "d")
	if err != nil {
		t.Fatal(err)
	}
	var objs []*Object
	for _, e := range entries {
		objs = append(objs, e.(*Object))
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].Remote() < objs[j].Remote() })
	return objs
}

func readObject(t *testing.T, o fs.Object, options ...fs.OpenOption) []byte {
	t.Helper()
	rc, err := o.Open(context.Background(), options...)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func held(w *Fs) (int, int64) {
	w.small.mu.Lock()
	defer w.small.mu.Unlock()
	return len(w.small.entries), w.small.held
}

func TestSmallFilesInOrderAreFetchedAhead(t *testing.T) {
	w := Wrap(memoryFs(t, 20), Options{SmallAhead: 5})
	objs := listed(t, w)
	for i := 0; i < 20; i++ {
		if got := readObject(t, objs[i]); !bytes.Equal(got, content(i)) {
			t.Fatalf("f%02d: read %q", i, got[:8])
		}
		n, _ := held(w)
		switch {
		case i == 0 && n != 0:
			t.Fatalf("after the first open %d objects are fetched ahead; one open is no order", n)
		case i >= 1 && i < 15 && n != 5:
			t.Fatalf("after f%02d: %d objects ahead, want 5", i, n)
		}
	}
	// Every open after the second is served from the prefetch, also one
	// that arrives while its fetch is still running (it waits for it
	// rather than cancelling it and fetching again).
	if h := w.Hits().SmallHits; h != 18 {
		t.Fatalf("%d of 20 opens served from the prefetch, want 18", h)
	}
	// The large object is never fetched ahead, and nothing is left held.
	if n, b := held(w); n != 0 || b != 0 {
		t.Fatalf("%d objects (%d bytes) still held at the end", n, b)
	}
	// A prefetched object read as a range returns the range.
	objs = listed(t, w)
	readObject(t, objs[0])
	readObject(t, objs[1])
	if got := readObject(t, objs[2], &fs.RangeOption{Start: 4, End: 7}); string(got) != "f02;" {
		t.Fatalf("range of a prefetched object: %q", got)
	}
}

func TestSmallFilesRandomOrderFetchNothing(t *testing.T) {
	w := Wrap(memoryFs(t, 20), Options{})
	objs := listed(t, w)
	for _, i := range []int{7, 3, 12, 0, 18, 5} {
		if got := readObject(t, objs[i]); !bytes.Equal(got, content(i)) {
			t.Fatalf("f%02d differs", i)
		}
	}
	if n, _ := held(w); n != 0 {
		t.Fatalf("a random order fetched %d objects ahead", n)
	}
}

func TestSmallFilesBudget(t *testing.T) {
	size := int64(len(content(0)))
	w := Wrap(memoryFs(t, 20), Options{SmallBudget: 3 * size})
	objs := listed(t, w)
	readObject(t, objs[0])
	readObject(t, objs[1])
	if n, b := held(w); n != 3 || b != 3*size {
		t.Fatalf("held %d objects, %d bytes; budget allows 3", n, b)
	}
}

func TestSmallFilesOff(t *testing.T) {
	w := Wrap(memoryFs(t, 5), Options{SmallMax: -1})
	objs := listed(t, w)
	for i := range 4 {
		readObject(t, objs[i])
	}
	if n, _ := held(w); n != 0 {
		t.Fatalf("prefetch off still held %d objects", n)
	}
}

// Writes, renames and server-side copies reach the wrapped backend with
// its own object types.
func TestWrappedFsPassesWritesThrough(t *testing.T) {
	ctx := context.Background()
	w := Wrap(memoryFs(t, 2), Options{})
	objs := listed(t, w)
	base := w.Fs.Features()
	if w.Features().Copy == nil || (w.Features().Move == nil) != (base.Move == nil) || (w.Features().PutStream == nil) != (base.PutStream == nil) {
		t.Fatal("the wrapped Fs's server-side copy, move or streaming upload was lost")
	}
	cp, err := w.Features().Copy(ctx, objs[0], "e/copy")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cp.(*Object); !ok {
		t.Fatalf("copy returned %T, want a wrapped object", cp)
	}
	if err := cp.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := w.NewObject(ctx, "e/copy"); err == nil {
		t.Fatal("removed object still there")
	}
	put, err := w.Put(ctx, bytes.NewReader([]byte("new")), object.NewStaticObjectInfo("e/new", time.Now(), 3, true, nil, w))
	if err != nil {
		t.Fatal(err)
	}
	if got := readObject(t, put); string(got) != "new" {
		t.Fatalf("uploaded object reads %q", got)
	}
	if w.Features().UnWrap() != w.Fs {
		t.Fatal("UnWrap does not return the wrapped Fs")
	}
}

// A reader that stops leaves files fetched ahead; Release (called by an
// idle FUSE server) drops them.
func TestSmallFilesReleased(t *testing.T) {
	w := Wrap(memoryFs(t, 20), Options{SmallAhead: 5})
	objs := listed(t, w)
	readObject(t, objs[0])
	readObject(t, objs[1])
	if n, _ := held(w); n != 5 {
		t.Fatalf("%d objects ahead, want 5", n)
	}
	w.Release()
	if n, b := held(w); n != 0 || b != 0 {
		t.Fatalf("after Release %d objects (%d bytes) are still held", n, b)
	}
	if got := readObject(t, objs[2]); !bytes.Equal(got, content(2)) {
		t.Fatal("a released object no longer reads")
	}
}

// With SmallFilesOnly (MOUNT_CACHED) small files read in order still come
// from the prefetch, and every other read is the wrapped object's own
// reader: no Reader of this package, no block fetched ahead.
func TestSmallFilesOnly(t *testing.T) {
	w := Wrap(memoryFs(t, 20), Options{SmallAhead: 5, SmallFilesOnly: true})
	objs := listed(t, w)
	for i := range 4 {
		if got := readObject(t, objs[i]); !bytes.Equal(got, content(i)) {
			t.Fatalf("f%02d differs", i)
		}
	}
	if n, _ := held(w); n != 5 {
		t.Fatalf("%d objects ahead, want 5", n)
	}
	large := objs[len(objs)-1]
	for _, opts := range [][]fs.OpenOption{nil, {&fs.RangeOption{Start: 1000, End: 1999}}} {
		rc, err := large.Open(context.Background(), opts...)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := rc.(*Reader); ok {
			t.Fatal("a large object was read through a Reader")
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		want := int64(1 << 20)
		if opts != nil {
			want = 1000
		}
		if err != nil || int64(len(data)) != want || !bytes.Equal(data, bytes.Repeat([]byte("L"), len(data))) {
			t.Fatalf("large object (options %v): %d bytes, err %v", opts, len(data), err)
		}
	}
	h := w.Hits()
	if h.SmallHits != 2 || h.BlockHits != 0 || h.BlockMisses != 0 {
		t.Fatalf("hits %+v, want 2 small-file hits (f02, f03) and no blocks", h)
	}
}

// fetched waits until every prefetch of w has finished.
func fetched(w *Fs) {
	w.small.mu.Lock()
	var es []*smallEntry
	for _, e := range w.small.entries {
		es = append(es, e)
	}
	w.small.mu.Unlock()
	for _, e := range es {
		<-e.done
	}
}

// An upload onto a listed object (MOUNT_CACHED's write-back updates the
// listed object in place) or its removal drops a prefetch of the old
// content: the next open reads the new bytes, of the same size or not.
func TestSmallFilesDroppedOnUpdate(t *testing.T) {
	ctx := context.Background()
	w := Wrap(memoryFs(t, 20), Options{SmallAhead: 5, SmallFilesOnly: true})
	objs := listed(t, w)
	readObject(t, objs[0])
	readObject(t, objs[1]) // f02..f06 fetched ahead
	fetched(w)
	updates := map[int][]byte{3: bytes.Repeat([]byte("N"), len(content(3))), 4: []byte("short")}
	for i, data := range updates {
		src := object.NewStaticObjectInfo(objs[i].Remote(), time.Now(), int64(len(data)), true, nil, w)
		if err := objs[i].Update(ctx, bytes.NewReader(data), src); err != nil {
			t.Fatal(err)
		}
	}
	if err := objs[5].Remove(ctx); err != nil {
		t.Fatal(err)
	}
	w.small.mu.Lock()
	for _, i := range []int{3, 4, 5} {
		if w.small.entries[objs[i]] != nil {
			t.Errorf("f%02d: the prefetch of its old content is still held", i)
		}
	}
	w.small.mu.Unlock()
	for i, data := range updates {
		if got := readObject(t, objs[i]); !bytes.Equal(got, data) {
			t.Errorf("f%02d after an update to %d bytes: read %d bytes %q", i, len(data), len(got), got[:min(8, len(got))])
		}
	}
}
