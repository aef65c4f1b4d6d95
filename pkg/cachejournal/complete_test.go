package cachejournal

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
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
	writeRcloneMeta(t, j.cache.MetaPath(name), info)
}

// writeRcloneMeta writes info to p as rclone's item._save does: JSON
// indented with tabs.
func writeRcloneMeta(t *testing.T, p string, info vfscache.Info) {
	t.Helper()
	data, err := json.MarshalIndent(info, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestCompleteFetchesWhatAPendingFileLacks(t *testing.T) {
	e := newEnv(t)
	orig := e.existing(t, "data.bin", 3<<20+5, 'o')
	short := e.existing(t, "short.bin", 1000, 's') // the file grew past its object
	j, err := Open(e.Cache, e.F)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	edit := []byte("EDITED")
	e.partialEdit(t, j, "data.bin", edit, int64(len(orig)))
	e.partialEdit(t, j, "short.bin", edit, 4000)
	e.partialEdit(t, j, "gone.bin", edit, 2000) // its object was deleted
	// Truncated after rclone's last save of the metadata: the data file's
	// size is the file's.
	trunc := e.existing(t, "trunc.bin", 3<<20, 't')
	e.partialEdit(t, j, "trunc.bin", edit, int64(len(trunc)))
	if err := os.Truncate(j.cache.DataPath("trunc.bin"), 50); err != nil {
		t.Fatal(err)
	}
	// Written at 100 and journaled, with the metadata not saying so (Repair
	// failed on it): never fetched over.
	journaled := e.existing(t, "journaled.bin", 1<<20, 'j')
	e.partialEdit(t, j, "journaled.bin", edit, int64(len(journaled)))
	if df, err := os.OpenFile(j.cache.DataPath("journaled.bin"), os.O_WRONLY, 0); err != nil {
		t.Fatal(err)
	} else if _, err := df.WriteAt([]byte("WRITTEN"), 100); err != nil {
		t.Fatal(err)
	} else if err := df.Close(); err != nil {
		t.Fatal(err)
	}
	if err := j.Wrote("journaled.bin", Written{Ranges: ranges.Ranges{{Pos: 100, Size: 7}}}); err != nil {
		t.Fatal(err)
	}

	// The store does not answer: Complete says so and changes nothing of
	// the file it needed the store for (the first it walks).
	if _, err := j.Complete(context.Background(), downFs{e.F}); !errors.Is(err, ErrStoreNeeded) {
		t.Fatalf("Complete with the store down: %v, want ErrStoreNeeded", err)
	}
	if info, err := j.cache.Info("data.bin"); err != nil || len(info.Rs) != 1 || info.Rs[0].Size != int64(len(edit)) {
		t.Fatalf("data.bin after a failed Complete: %+v, %v", info, err)
	}

	done, err := j.Complete(context.Background(), e.F)
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
	wantTrunc := append(append([]byte(nil), edit...), trunc[len(edit):50]...)
	if got, err := os.ReadFile(j.cache.DataPath("trunc.bin")); err != nil || !bytes.Equal(got, wantTrunc) {
		t.Fatalf("trunc.bin's data file: %d bytes, err %v, equal %v; want the 50 bytes it was truncated to", len(got), err, bytes.Equal(got, wantTrunc))
	}
	if info, _ := j.cache.Info("trunc.bin"); info.Size != 50 || len(Missing(info.Rs, 50)) != 0 {
		t.Fatalf("trunc.bin's metadata: %+v; want size 50, every byte present", info)
	}
	wantJ := append(append([]byte(nil), edit...), journaled[len(edit):]...)
	copy(wantJ[100:], "WRITTEN")
	if got, err := os.ReadFile(j.cache.DataPath("journaled.bin")); err != nil || !bytes.Equal(got, wantJ) {
		t.Fatalf("journaled.bin's data file: %d bytes, err %v, equal %v (at 100: %q)", len(got), err, bytes.Equal(got, wantJ), got[100:107])
	}
	if info, _ := j.cache.Info("journaled.bin"); len(Missing(info.Rs, info.Size)) != 0 {
		t.Fatalf("journaled.bin's metadata: %+v; want every byte present, the journaled ones too", info)
	}
	failed := map[string]bool{}
	for _, r := range done {
		failed[r.Name] = r.Failed
	}
	if len(done) != 5 || failed["data.bin"] || failed["short.bin"] || failed["trunc.bin"] || failed["journaled.bin"] || !failed["gone.bin"] {
		t.Fatalf("reported %+v; want every file filled but gone.bin, left to rclone", done)
	}

	// Idempotent: nothing is left to fill.
	if again, err := j.Complete(context.Background(), e.F); err != nil || len(again) != 1 || again[0].Name != "gone.bin" {
		t.Fatalf("a second Complete: %+v, %v", again, err)
	}
}

// cutFs is a remote whose objects' bytes from cut on cannot be read.
type cutFs struct {
	rfs.Fs
	cut int64
}

func (f cutFs) NewObject(ctx context.Context, name string) (rfs.Object, error) {
	o, err := f.Fs.NewObject(ctx, name)
	if err != nil {
		return nil, err
	}
	return cutObject{Object: o, cut: f.cut}, nil
}

type cutObject struct {
	rfs.Object
	cut int64
}

func (o cutObject) Open(ctx context.Context, options ...rfs.OpenOption) (io.ReadCloser, error) {
	for _, opt := range options {
		if r, ok := opt.(*rfs.RangeOption); ok && r.Start >= o.cut {
			return nil, errors.New("connection reset")
		}
	}
	return o.Object.Open(ctx, options...)
}

// TestCompleteKeepsItsProgress: a Complete the store stops answering
// half way keeps in the metadata what it filled, so the next start goes
// on from there.
func TestCompleteKeepsItsProgress(t *testing.T) {
	e := newEnv(t)
	orig := e.existing(t, "data.bin", 300, 'o')
	j, err := Open(e.Cache, e.F)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	e.partialEdit(t, j, "data.bin", []byte("EDITED"), 300)
	info, _ := j.cache.Info("data.bin")
	info.Rs.Insert(ranges.Range{Pos: 100, Size: 100}) // present: [0,6) and [100,200)
	writeRcloneMeta(t, j.cache.MetaPath("data.bin"), info)
	if _, err := j.Complete(context.Background(), cutFs{Fs: e.F, cut: 200}); !errors.Is(err, ErrStoreNeeded) {
		t.Fatalf("Complete with the store failing past byte 200: %v, want ErrStoreNeeded", err)
	}
	info, err = j.cache.Info("data.bin")
	if err != nil || !info.Rs.Present(ranges.Range{Pos: 0, Size: 200}) || info.Rs.Present(ranges.Range{Pos: 200, Size: 100}) {
		t.Fatalf("metadata after a Complete cut short: %+v, %v; want bytes 0..200 present and no more", info, err)
	}
	got, err := os.ReadFile(j.cache.DataPath("data.bin"))
	if err != nil || !bytes.Equal(got[6:100], orig[6:100]) {
		t.Fatalf("data file after a Complete cut short: err %v, bytes 6..100 equal %v", err, err == nil && bytes.Equal(got[6:100], orig[6:100]))
	}
}
