package cachejournal

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	rfs "github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/lib/ranges"
	"github.com/rclone/rclone/vfs/vfscache"
)

// downFs is a remote whose store does not answer lookups.
type downFs struct{ rfs.Fs }

func (downFs) NewObject(context.Context, string) (rfs.Object, error) {
	return nil, errors.New("connection refused")
}

// partialEdit puts into e's cache a file name waiting for upload of size
// bytes, with only edit, at its start, present (the rest holes).
func (e cacheEnv) partialEdit(t *testing.T, j *Journal, name string, edit []byte, size int64) {
	t.Helper()
	p := j.cache.DataPath(name)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, edit, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, size); err != nil {
		t.Fatal(err)
	}
	info := vfscache.Info{ModTime: time.Now(), ATime: time.Now(), Size: size, Dirty: true,
		Rs: ranges.Ranges{{Pos: 0, Size: int64(len(edit))}}}
	if err := j.writeMeta(name, info); err != nil {
		t.Fatal(err)
	}
}

func TestCompleteFetchesWhatAPendingFileLacks(t *testing.T) {
	e := newEnv(t)
	orig := e.existing(t, "data.bin", 3<<20+5, 'o')
	short := e.existing(t, "short.bin", 1000, 's') // the file grew past its object
	j, err := Open(e.cache, e.f)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	edit := []byte("EDITED")
	e.partialEdit(t, j, "data.bin", edit, int64(len(orig)))
	e.partialEdit(t, j, "short.bin", edit, 4000)
	e.partialEdit(t, j, "gone.bin", edit, 2000) // its object was deleted

	// The store does not answer: nothing is changed, and it says so.
	if _, err := j.Complete(context.Background(), downFs{e.f}); !errors.Is(err, ErrStoreNeeded) {
		t.Fatalf("Complete with the store down: %v, want ErrStoreNeeded", err)
	}
	for _, name := range []string{"data.bin", "short.bin", "gone.bin"} {
		if info, err := j.cache.Info(name); err != nil || len(info.Rs) != 1 || info.Rs[0].Size != int64(len(edit)) {
			t.Fatalf("%s after a failed Complete: %+v, %v", name, info, err)
		}
	}

	done, err := j.Complete(context.Background(), e.f)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", done)
	want := append(append([]byte(nil), edit...), orig[len(edit):]...)
	if got, err := os.ReadFile(j.cache.DataPath("data.bin")); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("data.bin's data file: %d bytes, err %v, equal %v", len(got), err, bytes.Equal(got, want))
	}
	if info, err := j.cache.Info("data.bin"); err != nil || !info.Dirty || len(Missing(info.Rs, info.Size)) != 0 {
		t.Fatalf("data.bin's metadata: %+v, %v; want dirty, every byte present", info, err)
	}
	// Filled up to the object's size, the rest (zeros of a file grown
	// past it) left as rclone leaves it.
	got, err := os.ReadFile(j.cache.DataPath("short.bin"))
	wantShort := append(append(append([]byte(nil), edit...), short[len(edit):]...), make([]byte, 3000)...)
	if err != nil || !bytes.Equal(got, wantShort) {
		t.Fatalf("short.bin's data file: %d bytes, err %v, equal %v", len(got), err, bytes.Equal(got, wantShort))
	}
	if info, _ := j.cache.Info("short.bin"); !info.Rs.Present(ranges.Range{Pos: 0, Size: 1000}) {
		t.Fatalf("short.bin's metadata: %+v; want bytes up to the object's size present", info)
	}
	if info, _ := j.cache.Info("gone.bin"); len(info.Rs) != 1 || info.Rs[0].Size != int64(len(edit)) {
		t.Fatalf("gone.bin's metadata changed: %+v", info)
	}
	failed := map[string]bool{}
	for _, r := range done {
		failed[r.Name] = r.Failed
	}
	if len(done) != 3 || failed["data.bin"] || failed["short.bin"] || !failed["gone.bin"] {
		t.Fatalf("reported %+v; want data.bin and short.bin filled, gone.bin left to rclone", done)
	}

	// Idempotent: nothing is left to fill.
	if again, err := j.Complete(context.Background(), e.f); err != nil || len(again) != 1 || again[0].Name != "gone.bin" {
		t.Fatalf("a second Complete: %+v, %v", again, err)
	}
}
