package copier

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	rfs "github.com/rclone/rclone/fs"
)

// replacingFs is a remote whose object "big.bin" is replaced by a new
// version of the same size when its first range past offset 0 is opened:
// another client overwriting the object while a copy downloads its
// ranges. Every range reads the version current when it is opened. It
// lists without ListR, so the copy lists through List.
type replacingFs struct {
	rfs.Fs
	t     *testing.T
	next  []byte
	once  sync.Once
	calls int
}

func (f *replacingFs) Features() *rfs.Features {
	ft := *f.Fs.Features()
	ft.ListR = nil
	return &ft
}

func (f *replacingFs) List(ctx context.Context, dir string) (rfs.DirEntries, error) {
	entries, err := f.Fs.List(ctx, dir)
	for i, e := range entries {
		if o, ok := e.(rfs.Object); ok {
			entries[i] = &replacingObject{Object: o, f: f}
		}
	}
	return entries, err
}

type replacingObject struct {
	rfs.Object
	f *replacingFs
}

func (o *replacingObject) Open(ctx context.Context, options ...rfs.OpenOption) (io.ReadCloser, error) {
	for _, opt := range options {
		if r, ok := opt.(*rfs.RangeOption); ok && r.Start > 0 {
			o.f.once.Do(func() { put(o.f.t, o.f.Fs, o.Remote(), o.f.next) })
		}
	}
	cur, err := o.f.Fs.NewObject(ctx, o.Remote())
	if err != nil {
		return nil, err
	}
	return cur.Open(ctx, options...)
}

// TestCopyObjectReplacedDuringRanges: an object replaced by one of the
// same size while its ranges download is never left as a file made of the
// two versions: it is left out, with a reason, and a copy after that
// fetches the new version whole.
func TestCopyObjectReplacedDuringRanges(t *testing.T) {
	v1, v2 := random(t, 4<<20), random(t, 4<<20)
	f := &replacingFs{Fs: memFs(t, map[string][]byte{"big.bin": v1, "small": []byte("x")}), t: t, next: v2}
	root := t.TempDir()
	dest, man := filepath.Join(root, "data"), filepath.Join(root, "manifest")
	opt := Options{ChunkSize: 1 << 20, Workers: 1}
	res, err := Copy(context.Background(), f, dest, man, opt, &Progress{})
	if err != nil {
		t.Fatal(err)
	}
	got, rerr := os.ReadFile(filepath.Join(dest, "big.bin"))
	switch {
	case rerr == nil && !bytes.Equal(got, v1) && !bytes.Equal(got, v2):
		t.Fatal("big.bin is made of two versions of the object")
	case rerr == nil:
		t.Fatal("big.bin was copied although the object changed while its ranges downloaded")
	case !errors.Is(rerr, os.ErrNotExist):
		t.Fatal(rerr)
	}
	if res.SkippedCount != 1 || len(res.Skipped) != 1 || res.Skipped[0].Key != "big.bin" {
		t.Fatalf("skipped %d: %+v; want big.bin", res.SkippedCount, res.Skipped)
	}
	if _, err := Copy(context.Background(), f, dest, man, opt, &Progress{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dest, "big.bin")); !bytes.Equal(got, v2) {
		t.Fatal("the next copy did not fetch the new version")
	}
}
