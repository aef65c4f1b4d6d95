package fuseserver

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rclone/rclone/lib/ranges"

	"github.com/bucket-csi/bucket-csi/internal/vfstest"
	"github.com/bucket-csi/bucket-csi/pkg/cachejournal"
)

// TestShadowLetsOneByteListTheFile: the writer's file put in place of the
// data file rclone created, rclone reports its shadow's size and time
// (synced by syncShadow, 0 before), and after markWritten rclone's
// metadata lists every byte of the written file, the byte went to the
// shadow (the written file keeps its bytes, and its time once given back
// as adopt does) and the upload has the file's bytes. A writer's file a kill left before its rename is
// removed by rclone's next reload.
// If rclone changes how an open item finds its size or marks what it did
// not write, this fails, and passthrough writers must copy their files
// through rclone again.
func TestShadowLetsOneByteListTheFile(t *testing.T) {
	e := vfstest.New(t) // rclone's real VFS cache over its local backend
	layout, err := cachejournal.LayoutOf(e.Cache, e.F)
	if err != nil {
		t.Fatal(err)
	}
	v := e.Start(t, 2*time.Second) // the metadata is read before the upload
	if err := v.MkdirAll("out", 0o755); err != nil {
		t.Fatal(err)
	}
	const name = "out/w.bin"
	creator, err := v.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644) // opens rclone's item
	if err != nil {
		t.Fatal(err)
	}
	p := &passthroughFS{cache: layout}
	f, shadow, err := p.writerFiles(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.placeWriter(name, f, shadow); err != nil {
		t.Fatal(err)
	}
	b := &ptBacking{f: f, shadow: shadow}
	defer f.Close()
	defer b.closeShadow()
	data := bytes.Repeat([]byte("written through passthrough "), 120_001)
	for _, part := range [][]byte{data[:1<<20], data[1<<20:]} { // as the kernel writes it
		if _, err := f.Write(part); err != nil {
			t.Fatal(err)
		}
	}
	size := int64(len(data))
	node, err := v.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	if got := node.Size(); got != 0 {
		t.Fatalf("before syncShadow rclone reports %d bytes, want its shadow's 0", got)
	}
	set := time.Date(2021, 3, 4, 5, 6, 7, 890, time.UTC)
	if err := os.Chtimes(layout.DataPath(name), set, set); err != nil {
		t.Fatal(err)
	}
	if err := b.syncShadow(); err != nil {
		t.Fatal(err)
	}
	if got, mt := node.Size(), node.ModTime(); got != size || !mt.Equal(set) {
		t.Fatalf("after syncShadow rclone reports %d bytes at %v, want %d at %v", got, mt, size, set)
	}

	h, err := v.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	n, mtime, err := b.markWritten(h)
	if err != nil || n != size || !mtime.Equal(set) {
		t.Fatalf("markWritten = %d, %v, %v; want %d, %v", n, mtime, err, size, set)
	}
	if err := node.SetModTime(mtime); err != nil { // as adopt does
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := creator.Close(); err != nil {
		t.Fatal(err)
	}
	info, err := layout.Info(name)
	if err != nil {
		t.Fatal(err)
	}
	if !info.Rs.Present(ranges.Range{Pos: 0, Size: size}) || info.Size != size || !info.Dirty {
		t.Fatalf("rclone's metadata after markWritten: size %d, present %v, dirty %v; want all %d bytes present and dirty", info.Size, info.Rs, info.Dirty, size)
	}
	if got, err := os.ReadFile(layout.DataPath(name)); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the written file holds %d bytes (%v), not the ones written", len(got), err)
	}
	if fi, err := os.Stat(layout.DataPath(name)); err != nil || !fi.ModTime().Equal(set) {
		t.Fatalf("the written file's time is %v (%v), want %v", fi.ModTime(), err, set)
	}
	last := make([]byte, 1)
	if fi, err := shadow.Stat(); err != nil || fi.Size() != size {
		t.Fatalf("rclone's shadow holds %v (%v), want %d bytes", fi, err, size)
	}
	if _, err := shadow.ReadAt(last, size-1); err != nil || last[0] != data[size-1] {
		t.Fatalf("rclone's shadow ends with %q (%v), want the byte written through rclone %q", last, err, data[size-1])
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		got, err := os.ReadFile(filepath.Join(e.Remote, name))
		if err == nil && bytes.Equal(got, data) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the upload holds %d bytes (%v), not the ones written", len(got), err)
		}
	}
	// rclone saves the metadata clean after the upload: stop after that,
	// so the next VFS reloads a settled cache.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if info, err := layout.Info(name); err == nil && !info.Dirty {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("rclone's metadata never said clean after the upload")
		}
	}
	v.Stop()

	stray := filepath.Join(filepath.Dir(layout.DataPath(name)), writerPrefix+"left")
	if err := os.WriteFile(stray, []byte("a kill before the rename"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.Start(t, time.Second)
	if _, err := os.Stat(stray); !os.IsNotExist(err) {
		t.Fatalf("a writer's file left before its rename is still there after rclone's reload (%v)", err)
	}
}
