package cachejournal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/rclone/rclone/backend/local"
	rfs "github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/rc"
	"github.com/rclone/rclone/lib/ranges"
	"github.com/rclone/rclone/vfs"

	"github.com/bucket-csi/bucket-csi/internal/vfstest"
)

// These tests run rclone's real VFS cache over its local backend (the
// "bucket" is a directory): the journal's job is to keep rclone's own
// on-disk state uploadable, so nothing here imitates rclone.

// cacheEnv is a remote directory and a cache directory for one test.
type cacheEnv struct{ vfstest.Env }

func newEnv(t *testing.T) cacheEnv { return cacheEnv{vfstest.New(t)} }

// testVFS is a VFS whose Stop (a server dying: pending uploads stay in
// the cache) may be called early.
type testVFS = vfstest.VFS

// startVFS opens a VFS over the cache with the given write-back delay.
func (e cacheEnv) startVFS(t *testing.T, writeBack time.Duration) testVFS {
	return e.Start(t, writeBack)
}

// write creates name through v with data and closes it, recording it as
// journalFS does: a created file, its tail the application's.
func write(t *testing.T, v testVFS, j *Journal, name string, data []byte) {
	t.Helper()
	if dir := filepath.Dir(name); dir != "." {
		if err := v.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	h, err := v.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Write(data); err != nil {
		t.Fatal(err)
	}
	w := Written{Tail: true}
	w.Ranges.Insert(ranges.Range{Pos: 0, Size: int64(len(data))})
	if err := j.Wrote(name, w); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
}

// writeAt writes data at off into the open handle h and returns the range
// for the journal.
func writeAt(t *testing.T, h vfs.Handle, data []byte, off int64) ranges.Range {
	t.Helper()
	if _, err := h.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
	return ranges.Range{Pos: off, Size: int64(len(data))}
}

// waitUploaded waits until the remote holds want at name and rclone has
// saved the file clean.
func (e cacheEnv) waitUploaded(t *testing.T, name string, want []byte) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := os.ReadFile(filepath.Join(e.Remote, name))
		if err == nil && bytes.Equal(got, want) && e.savedClean(name) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not uploaded (err %v, %d bytes)", name, err, len(got))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// savedClean reports whether rclone's metadata of name says clean (or is
// gone): the upload's last write to the cache is done, so nothing writes
// there while the test's directories are removed.
func (e cacheEnv) savedClean(name string) bool {
	l, err := LayoutOf(e.Cache, e.F)
	if err != nil {
		return false
	}
	info, err := l.Info(name)
	return errors.Is(err, fs.ErrNotExist) || (err == nil && !info.Dirty)
}

// TestRootsAreRclones: the journal finds each item's data and metadata
// file where rclone's cache keeps them, names needing encoding included.
// If rclone changes its layout, this fails (and the server refuses to
// start, see fuseserver).
func TestRootsAreRclones(t *testing.T) {
	e := newEnv(t)
	j, err := Open(e.Cache, e.F)
	if err != nil {
		t.Fatal(err)
	}
	v := e.startVFS(t, time.Hour)
	dc, _ := v.Stats()["diskCache"].(rc.Params)
	if l := j.Layout(); dc["path"] != l.Data || dc["pathMeta"] != l.Meta {
		t.Fatalf("layout %+v, the VFS says %v %v", l, dc["path"], dc["pathMeta"])
	}
	for _, name := range []string{"plain.txt", "d/ün ïcode.bin", "d/e/back\\slash:colon", "d/.hidden"} {
		write(t, v, j, name, []byte(name))
		for _, p := range []string{j.cache.DataPath(name), j.cache.MetaPath(name)} {
			if _, err := os.Stat(p); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
}

// TestRepairKeepsATornWrite: a written file whose metadata is empty (a
// kill inside rclone's metadata rewrite) is deleted by rclone on reload;
// after Repair it is uploaded whole.
func TestRepairKeepsATornWrite(t *testing.T) {
	data := bytes.Repeat([]byte("checkpoint "), 100_000)
	for _, repair := range []bool{false, true} {
		e := newEnv(t)
		j, err := Open(e.Cache, e.F)
		if err != nil {
			t.Fatal(err)
		}
		v := e.startVFS(t, time.Hour)
		write(t, v, j, "ckpt/model.bin", data)
		// A file named like a temporary file: nothing of the repair's
		// may land on it.
		write(t, v, j, "ckpt/.tmp-model.bin", []byte("mine"))
		v.Stop() // the server dies with the uploads pending
		if err := os.Truncate(j.cache.MetaPath("ckpt/model.bin"), 0); err != nil {
			t.Fatal(err)
		}
		if repair {
			j, err = Open(e.Cache, e.F)
			if err != nil {
				t.Fatal(err)
			}
			if got := j.Repair(); len(got) != 1 || got[0].Name != "ckpt/model.bin" || got[0].Failed {
				t.Fatalf("Repair = %v", got)
			}
		}
		e.startVFS(t, 10*time.Millisecond)
		if !repair {
			// rclone alone: the pending file is gone from the cache.
			if _, err := os.Stat(j.cache.DataPath("ckpt/model.bin")); err == nil {
				t.Fatal("rclone kept an item with torn metadata: the journal's reason to exist is gone, revisit it")
			}
			continue
		}
		e.waitUploaded(t, "ckpt/model.bin", data)
		e.waitUploaded(t, "ckpt/.tmp-model.bin", []byte("mine"))
	}
}

// existing puts an object of size bytes of pattern b straight into the
// remote, as if uploaded long ago.
func (e cacheEnv) existing(t *testing.T, name string, size int, b byte) []byte {
	t.Helper()
	data := bytes.Repeat([]byte{b}, size)
	if err := os.WriteFile(filepath.Join(e.Remote, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return data
}

// TestRepairKeepsAnEditInPlace: bytes written into an existing file and
// closed, with the server killed before rclone's final metadata save
// (which alone lists the later writes as present), must not be replaced
// by the bucket's old bytes when rclone fetches the rest of the file.
func TestRepairKeepsAnEditInPlace(t *testing.T) {
	for _, repair := range []bool{false, true} {
		e := newEnv(t)
		want := e.existing(t, "db.bin", 3<<20, 'A')
		j, err := Open(e.Cache, e.F)
		if err != nil {
			t.Fatal(err)
		}
		v := e.startVFS(t, time.Hour)
		h, err := v.OpenFile("db.bin", os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		var w Written
		w.Ranges.Insert(writeAt(t, h, []byte("BBBB"), 0))
		// What rclone saved at the first write: all a kill before the
		// release's save leaves.
		early, err := os.ReadFile(j.cache.MetaPath("db.bin"))
		if err != nil {
			t.Fatal(err)
		}
		w.Ranges.Insert(writeAt(t, h, []byte("CCCC"), 2<<20))
		if err := j.Wrote("db.bin", w); err != nil {
			t.Fatal(err)
		}
		if err := h.Close(); err != nil {
			t.Fatal(err)
		}
		v.Stop()
		if err := os.WriteFile(j.cache.MetaPath("db.bin"), early, 0o600); err != nil {
			t.Fatal(err)
		}
		copy(want, "BBBB")
		copy(want[2<<20:], "CCCC")
		if repair {
			if j, err = Open(e.Cache, e.F); err != nil {
				t.Fatal(err)
			}
			if got := j.Repair(); len(got) != 1 || got[0].Failed {
				t.Fatalf("Repair = %v", got)
			}
		}
		e.startVFS(t, 10*time.Millisecond)
		if !repair {
			// rclone alone fetches the bucket's bytes over the edit.
			deadline := time.Now().Add(20 * time.Second)
			for {
				got, _ := os.ReadFile(filepath.Join(e.Remote, "db.bin"))
				if len(got) == len(want) && got[0] == 'B' && got[2<<20] == 'A' {
					break // the rclone flaw this test guards against
				}
				if time.Now().After(deadline) {
					t.Fatal("rclone kept the later write without the journal: revisit the journal's range records")
				}
				time.Sleep(20 * time.Millisecond)
			}
			continue
		}
		e.waitUploaded(t, "db.bin", want)
	}
}

// TestRepairDeclaresOnlyWhatWasWritten: a file written at one byte while
// most of it was never fetched, its metadata torn by a kill, is uploaded
// as the bucket's bytes with that one byte changed: never with zeros
// where nothing was fetched. And a record whose written ranges are holes
// in the data file (another file by now) is left to rclone.
func TestRepairDeclaresOnlyWhatWasWritten(t *testing.T) {
	e := newEnv(t)
	want := e.existing(t, "big.bin", 3<<20, 'A')
	e.existing(t, "other.bin", 1<<20, 'O')
	j, err := Open(e.Cache, e.F)
	if err != nil {
		t.Fatal(err)
	}
	v := e.startVFS(t, time.Hour)
	h, err := v.OpenFile("big.bin", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var w Written
	w.Ranges.Insert(writeAt(t, h, []byte("B"), 1<<20))
	if err := j.Wrote("big.bin", w); err != nil { // a dup'd descriptor closed
		t.Fatal(err)
	}
	v.Stop() // killed with the file open: most of it never fetched
	if err := os.Truncate(j.cache.MetaPath("big.bin"), 0); err != nil {
		t.Fatal(err)
	}
	// other.bin: recorded, but its data file is now a sparse stranger.
	var wo Written
	wo.Ranges.Insert(ranges.Range{Pos: 0, Size: 4096})
	if err := j.Wrote("other.bin", wo); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(j.cache.DataPath("other.bin")), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(j.cache.DataPath("other.bin"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(j.cache.DataPath("other.bin"), 1<<20); err != nil {
		t.Fatal(err)
	}
	if j, err = Open(e.Cache, e.F); err != nil {
		t.Fatal(err)
	}
	if got := j.Repair(); len(got) != 2 || got[0].Failed || got[1].Failed {
		t.Fatalf("Repair = %v", got)
	}
	if _, err := os.Stat(j.cache.MetaPath("other.bin")); err == nil {
		t.Fatal("metadata written for a data file that holds none of the recorded writes")
	}
	e.startVFS(t, 10*time.Millisecond)
	want[1<<20] = 'B'
	e.waitUploaded(t, "big.bin", want)
	if got, _ := os.ReadFile(filepath.Join(e.Remote, "other.bin")); !bytes.Equal(got, bytes.Repeat([]byte{'O'}, 1<<20)) {
		t.Fatal("other.bin changed in the bucket")
	}
}

// TestRenameReplacesTheTargetsRecord: a rename makes the moved file's
// record the target name's, dropping what the target had (a replaced
// file's record would claim ranges of another file); a failed rename
// changes nothing; a rename that never returned is finished by Repair
// the same way when its data moved, and not when it did not; a deleted
// name keeps no record; a record under a path whose parent became a file
// is dropped by Repair without an error.
func TestRenameReplacesTheTargetsRecord(t *testing.T) {
	e := newEnv(t)
	j, err := Open(e.Cache, e.F)
	if err != nil {
		t.Fatal(err)
	}
	whole := Written{Tail: true}
	oneByte := Written{Ranges: ranges.Ranges{{Pos: 0, Size: 1}}}
	for name, w := range map[string]Written{"latest.bin": whole, "db.bin": oneByte, "keep.bin": whole, "src.bin": oneByte, "gone.bin": whole, "a/b": whole} {
		if err := j.Wrote(name, w); err != nil {
			t.Fatal(err)
		}
	}
	done, err := j.Renaming("db.bin", "latest.bin")
	if err != nil {
		t.Fatal(err)
	}
	if err := done(true); err != nil {
		t.Fatal(err)
	}
	if got, ok := j.written["latest.bin"]; !ok || got.Tail || !got.Ranges.Equal(oneByte.Ranges) {
		t.Fatalf("latest.bin after the rename: %+v, want db.bin's record only", got)
	}
	if _, ok := j.written["db.bin"]; ok {
		t.Fatal("db.bin keeps a record after it was renamed")
	}
	done, err = j.Renaming("src.bin", "keep.bin")
	if err != nil {
		t.Fatal(err)
	}
	if err := done(false); err != nil {
		t.Fatal(err)
	}
	if !j.written["keep.bin"].Tail || len(j.written["src.bin"].Ranges) != 1 {
		t.Fatalf("a failed rename changed records: %+v", j.written)
	}
	if err := j.Removed("gone.bin"); err != nil {
		t.Fatal(err)
	}
	// Cut renames: src.bin's data moved onto keep.bin; x's did not move.
	if _, err := j.Renaming("src.bin", "keep.bin"); err != nil {
		t.Fatal(err)
	}
	if err := j.Wrote("x", oneByte); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Renaming("x", "y"); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"keep.bin": "S", "x": "X", "a": "now a file"} {
		if err := os.MkdirAll(filepath.Dir(j.cache.DataPath(name)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(j.cache.DataPath(name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if j, err = Open(e.Cache, e.F); err != nil {
		t.Fatal(err)
	}
	if _, ok := j.written["gone.bin"]; ok {
		t.Fatal("a deleted name's record came back at load")
	}
	for _, r := range j.Repair() {
		if r.Failed {
			t.Fatalf("Repair failed on %s: %s", r.Name, r.Action)
		}
	}
	if got := j.written["keep.bin"]; got.Tail || !got.Ranges.Equal(oneByte.Ranges) {
		t.Fatalf("keep.bin after Repair finished the cut rename: %+v, want src.bin's record", got)
	}
	if _, ok := j.written["src.bin"]; ok {
		t.Fatal("src.bin keeps a record after Repair finished its rename")
	}
	if _, ok := j.written["x"]; !ok {
		t.Fatal("a cut rename whose data did not move lost the source's record")
	}
	if _, ok := j.written["a/b"]; ok {
		t.Fatal("a record under a parent that is now a file survived Repair")
	}
}

// TestRepairFinishesARename: a rename killed after rclone moved the data
// file but before it moved the metadata file, for a file, a directory and
// a file replacing another, ends with the files uploaded under their new
// names.
func TestRepairFinishesARename(t *testing.T) {
	e := newEnv(t)
	j, err := Open(e.Cache, e.F)
	if err != nil {
		t.Fatal(err)
	}
	// b is uploaded and clean in the cache before the rename replaces it.
	v := e.startVFS(t, 10*time.Millisecond)
	write(t, v, j, "b", []byte("old b"))
	e.waitUploaded(t, "b", []byte("old b"))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if info, err := j.cache.Info("b"); err == nil && !info.Dirty && info.Fingerprint != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b's cache metadata never became clean")
		}
	}
	v.Stop()
	v = e.startVFS(t, time.Hour)
	write(t, v, j, "a.tmp", []byte("file"))
	write(t, v, j, "dir/x", []byte("x"))
	write(t, v, j, "dir/sub/y", []byte("y"))
	write(t, v, j, "b.tmp", []byte("new b"))
	v.Stop()
	// The state rclone leaves between its two renames (item.rename).
	if _, err := j.Renaming("a.tmp", "a.json"); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Renaming("dir", "moved"); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Renaming("b.tmp", "b"); err != nil {
		t.Fatal(err)
	}
	for _, mv := range [][2]string{{"a.tmp", "a.json"}, {"dir/x", "moved/x"}, {"dir/sub/y", "moved/sub/y"}, {"b.tmp", "b"}} {
		to := j.cache.DataPath(mv[1])
		if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(j.cache.DataPath(mv[0]), to); err != nil {
			t.Fatal(err)
		}
	}
	j, err = Open(e.Cache, e.F)
	if err != nil {
		t.Fatal(err)
	}
	if got := j.Repair(); len(got) != 4 {
		t.Fatalf("Repair = %v", got)
	}
	e.startVFS(t, 10*time.Millisecond)
	e.waitUploaded(t, "a.json", []byte("file"))
	e.waitUploaded(t, "moved/x", []byte("x"))
	e.waitUploaded(t, "moved/sub/y", []byte("y"))
	e.waitUploaded(t, "b", []byte("new b"))
}

// TestSweepDropsUploaded: a record stays while its file is dirty and goes
// once rclone has uploaded it or the file is deleted; a reopened journal
// remembers what was not swept.
func TestSweepDropsUploaded(t *testing.T) {
	e := newEnv(t)
	j, err := Open(e.Cache, e.F)
	if err != nil {
		t.Fatal(err)
	}
	v := e.startVFS(t, time.Hour)
	write(t, v, j, "pending", []byte("p"))
	write(t, v, j, "deleted", []byte("d"))
	if err := v.Remove("deleted"); err != nil {
		t.Fatal(err)
	}
	j.Sweep(nil)
	// A server started now (the journal reopened) must still know.
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if j, err = Open(e.Cache, e.F); err != nil || len(j.written) != 1 || !j.written["pending"].Tail {
		t.Fatalf("after a sweep with one file pending: %v, %v", j.written, err)
	}
	v.Stop()
	e.startVFS(t, 10*time.Millisecond)
	e.waitUploaded(t, "pending", []byte("p"))
	deadline := time.Now().Add(10 * time.Second)
	for j.Sweep(nil); len(j.written) > 0; j.Sweep(nil) {
		if time.Now().After(deadline) {
			t.Fatalf("records left after the upload: %v", j.written)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if j, err = Open(e.Cache, e.F); err != nil || len(j.written) != 0 {
		t.Fatalf("reopened after the sweep: %v, %v", j.written, err)
	}
	if fi, err := os.Stat(filepath.Join(e.Cache, File)); err != nil || fi.Size() != 0 {
		t.Fatalf("journal file after compaction: %v, %v", fi, err)
	}
}

// TestCompaction: the file is rewritten once it holds far more lines
// than live records, and records written after that are kept.
func TestCompaction(t *testing.T) {
	e := newEnv(t)
	j, err := Open(e.Cache, e.F)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3000 { // no data files: every one is swept
		if err := j.Wrote(fmt.Sprintf("gone-%d", i), Written{Tail: true}); err != nil {
			t.Fatal(err)
		}
	}
	j.Sweep(nil)
	if fi, err := os.Stat(filepath.Join(e.Cache, File)); err != nil || fi.Size() != 0 {
		t.Fatalf("6000 lines, none live: not compacted: %v, %v", fi, err)
	}
	if err := j.Wrote("after", Written{Tail: true}); err != nil {
		t.Fatal(err)
	}
	j2, err := Open(e.Cache, e.F)
	if err != nil || len(j2.written) != 1 || !j2.written["after"].Tail {
		t.Fatalf("reopened: %v, %v", j2.written, err)
	}
}

// BenchmarkWrote is the journal's cost per close of a newly written file;
// BenchmarkSmallFileBaseline, a 16-byte file written on the same disk, is
// what to compare it with (the application's own file costs at least
// that, in rclone's cache).
func BenchmarkWrote(b *testing.B) {
	f, err := rfs.NewFs(context.Background(), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	j, err := Open(b.TempDir(), f)
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for b.Loop() {
		n++
		if err := j.Wrote(fmt.Sprintf("ckpt/step-%d.json", n), Written{Ranges: ranges.Ranges{{Pos: 0, Size: 14}}, Tail: true}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSmallFileBaseline(b *testing.B) {
	dir := b.TempDir()
	n := 0
	for b.Loop() {
		n++
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("step-%d.json", n)), []byte(`{"step":12345}`), 0o600); err != nil {
			b.Fatal(err)
		}
	}
}

// TestRepairUploadsAMappedFile: a file read whole into the cache, then
// written through a shared mapping of the cache file (which rclone never
// sees; here a write to the data file), with the server killed before it
// marked the file for upload: Sweep keeps the record although the
// metadata says clean, and Repair marks the file dirty so it is uploaded
// with the mapping's bytes. Settled clears the mark for good, across a
// reopen of the journal.
func TestRepairUploadsAMappedFile(t *testing.T) {
	e := newEnv(t)
	want := e.existing(t, "m.bin", 2<<20, 'A')
	e.existing(t, "s.bin", 10, 'S')
	j, err := Open(e.Cache, e.F)
	if err != nil {
		t.Fatal(err)
	}
	v := e.startVFS(t, 10*time.Millisecond)
	for _, name := range []string{"m.bin", "s.bin"} {
		h, err := v.OpenFile(name, os.O_RDONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := io.Copy(io.Discard, h); err != nil || n == 0 {
			t.Fatalf("reading %s: %d bytes, %v", name, n, err)
		}
		if err := h.Close(); err != nil {
			t.Fatal(err)
		}
		if err := j.Mapped(name); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Settled("s.bin"); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(j.cache.DataPath("m.bin"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("MMMM"), 1<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	copy(want[1<<20:], "MMMM")
	j.Sweep(nil)
	if !j.written["m.bin"].Mapped || j.written["s.bin"].Mapped {
		t.Fatalf("after a sweep: %+v", j.written)
	}
	v.Stop()
	if info, err := j.cache.Info("m.bin"); err != nil || info.Dirty {
		t.Fatalf("rclone's metadata of the mapped file: dirty=%v, %v (the test needs it clean)", info.Dirty, err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if j, err = Open(e.Cache, e.F); err != nil {
		t.Fatal(err)
	}
	if !j.written["m.bin"].Mapped || j.written["s.bin"].Mapped {
		t.Fatalf("reopened: %+v", j.written)
	}
	got := j.Repair()
	if len(got) != 1 || got[0].Name != "m.bin" || got[0].Failed {
		t.Fatalf("Repair = %v", got)
	}
	if j.written["m.bin"].Mapped {
		t.Fatal("the mark is still set after Repair marked the file dirty")
	}
	e.startVFS(t, 10*time.Millisecond)
	e.waitUploaded(t, "m.bin", want)
}
