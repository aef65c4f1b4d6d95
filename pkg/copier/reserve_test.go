package copier

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
)

// TestCopyReservesBeforeDownloading: Options.Space is called once with
// the disk space of the finished copy (files already there included), in
// whole blocks of the destination; a refusal downloads nothing and is
// returned as is.
func TestCopyReservesBeforeDownloading(t *testing.T) {
	f := memFs(t, map[string][]byte{"a": random(t, 1000), "b/c": random(t, 234)})
	root := t.TempDir()
	dest, man := filepath.Join(root, "data"), filepath.Join(root, "manifest")
	var asked []int64
	refuse := errors.New("no room")
	opt := Options{Space: func(_ context.Context, _ string, s Sizes) error {
		asked = append(asked, s.Total)
		return refuse
	}}
	if _, err := Copy(context.Background(), f, dest, man, opt, &Progress{}); !errors.Is(err, refuse) {
		t.Fatalf("refused copy = %v", err)
	}
	whole := 3 * blockSize(dest) // two files of under a block each, and b/
	if entries, _ := os.ReadDir(dest); len(entries) != 0 || len(asked) != 1 || asked[0] != whole {
		t.Fatalf("refused copy: %d entries in dest, Space asked %v (want once for %d)", len(entries), asked, whole)
	}
	opt.Space = func(_ context.Context, _ string, s Sizes) error { asked = append(asked, s.Total); return nil }
	for range 2 {
		if _, err := Copy(context.Background(), f, dest, man, opt, &Progress{}); err != nil {
			t.Fatal(err)
		}
	}
	if len(asked) != 3 || asked[1] != whole || asked[2] != whole {
		t.Fatalf("Space asked %v; an up-to-date copy must ask for its whole size again", asked)
	}
}

// TestCopyChargesTinyObjectsTheirBlocks: 2,000 objects of one byte and
// 1,000 empty ones in 10 directories are charged a block each, and each
// directory too, with their count, not 2,000 bytes: a bucket of many tiny
// objects cannot fill a node's disk or its inodes on a reservation of
// almost nothing.
func TestCopyChargesTinyObjectsTheirBlocks(t *testing.T) {
	objects := map[string][]byte{}
	for i := range 3000 {
		var data []byte
		if i < 2000 {
			data = []byte{'x'}
		}
		objects[fmt.Sprintf("d%d/o%d", i%10, i)] = data
	}
	f := memFs(t, objects)
	root := t.TempDir()
	var total, need, files int64
	opt := Options{Space: func(_ context.Context, _ string, s Sizes) error {
		total, need, files = s.Total, s.Need, s.Files
		return nil
	}}
	if _, err := Copy(context.Background(), f, filepath.Join(root, "data"), filepath.Join(root, "manifest"), opt, &Progress{}); err != nil {
		t.Fatal(err)
	}
	block := blockSize(root)
	if total != 3010*block || need != 3010*block || files != 3010 {
		t.Fatalf("Space asked total %d, need %d for %d files; want %d, %d, 3010", total, need, files, 3010*block, 3010*block)
	}
}

// TestCopyChargesDirectories: ten objects 101 directories deep, none
// shared, are charged 1,010 directories and 10 files, not 10 files: a
// key of a few KiB must not make megabytes of directories on a block's
// charge. An up-to-date copy needs nothing more.
func TestCopyChargesDirectories(t *testing.T) {
	objects := map[string][]byte{}
	for i := range 10 {
		objects[fmt.Sprintf("k%d/%sf", i, strings.Repeat("a/", 100))] = []byte{'x'}
	}
	f := memFs(t, objects)
	root := t.TempDir()
	var got []Sizes
	opt := Options{Space: func(_ context.Context, _ string, s Sizes) error { got = append(got, s); return nil }}
	for range 2 {
		if _, err := Copy(context.Background(), f, filepath.Join(root, "data"), filepath.Join(root, "manifest"), opt, &Progress{}); err != nil {
			t.Fatal(err)
		}
	}
	block := blockSize(root)
	if len(got) != 2 || got[0].Total != 1020*block || got[0].Need != 1020*block || got[0].Files != 1020 {
		t.Fatalf("Space asked %+v; want total and need %d for 1,020 files and directories", got, 1020*block)
	}
	if got[1].Total != 1020*block || got[1].Need != 0 || got[1].Files != 0 {
		t.Fatalf("an up-to-date copy asked %+v; want total %d, nothing needed", got[1], 1020*block)
	}
}

// TestNewDirs: the directories a file adds beyond the last file's.
func TestNewDirs(t *testing.T) {
	for _, tc := range []struct {
		last, dir string
		want      int64
	}{
		{"", ".", 0}, {"", "a", 1}, {".", "a/b", 2}, {"a/b", "a/b", 0}, {"a/b", "a/c", 1},
		{"a/b/c", "a", 0}, {"a", "a/b/c", 2}, {"ab", "a/b", 2}, {"a/bc", "a/b/x", 2}, {"a/b", ".", 0},
	} {
		if got := newDirs(tc.last, tc.dir); got != tc.want {
			t.Errorf("newDirs(%q, %q) = %d, want %d", tc.last, tc.dir, got, tc.want)
		}
	}
}

// TestFreeSpaceCountsInodes: FreeSpace refuses a copy of more files than
// the disk has free inodes, naming both.
func TestFreeSpaceCountsInodes(t *testing.T) {
	dir := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Files == 0 {
		t.Fatalf("the test directory's filesystem reports no inode count; run it on one that does (ext4, xfs, tmpfs)")
	}
	err := FreeSpace(context.Background(), dir, 0, 0, int64(st.Ffree)+1)
	if !errors.Is(err, fault.Exhausted) || !strings.Contains(err.Error(), "inodes are free") {
		t.Fatalf("FreeSpace of more files than free inodes = %v, want fault.Exhausted naming the inodes", err)
	}
	if err := FreeSpace(context.Background(), dir, 0, 0, 1); err != nil {
		t.Fatalf("FreeSpace of one file = %v", err)
	}
}

// TestFootprint: whole blocks, at least one, and no wrap-around for a
// listed size near the largest int64 (a hostile listing is refused, not
// charged one block).
func TestFootprint(t *testing.T) {
	for _, tc := range []struct{ n, want int64 }{
		{0, 4096}, {1, 4096}, {4096, 4096}, {4097, 8192},
		{math.MaxInt64, math.MaxInt64}, {math.MaxInt64 - 10, math.MaxInt64},
	} {
		if got := footprint(tc.n, 4096); got != tc.want {
			t.Errorf("footprint(%d) = %d, want %d", tc.n, got, tc.want)
		}
	}
	if got := addSpace(math.MaxInt64-1, 4096); got != math.MaxInt64 {
		t.Errorf("addSpace near the top = %d, want it saturated", got)
	}
}

// ownFiles is the disk the copy's own files under root take: everything
// but the copied files in data/.
func ownFiles(t *testing.T, root string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p == filepath.Join(root, "data") {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() {
			st, err := d.Info()
			if err != nil {
				return err
			}
			n += st.Size()
		}
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return n
}

// TestCopyMetersItsBookkeeping: the copy's own files (the sorted listing,
// the plan, the manifest) grow with the number of keys, here 3,000 empty
// objects with 900-byte names, about 2.7 MB per file. No byte of them is
// written before Options.Bookkeeping granted it, Space is told what they
// take with the manifest lines still to come, and a refusal in the
// listing stops the copy before anything more is written or downloaded,
// is answered as is (not as the store's listing error) and leaves none of
// them behind.
func TestCopyMetersItsBookkeeping(t *testing.T) {
	objects := map[string][]byte{}
	long := strings.Repeat("n", 200)
	for i := range 3000 {
		objects[fmt.Sprintf("%s/%s/%s/%s/%04d", long, long, long, long, i)] = nil
	}
	f := memFs(t, objects)
	root := t.TempDir()
	dest, man := filepath.Join(root, "data"), filepath.Join(root, "manifest")
	var granted int64
	var sizes Sizes
	opt := Options{
		Bookkeeping: func(_ context.Context, dir string, need, want int64) (int64, error) {
			if dir != root {
				t.Errorf("Bookkeeping asked for %s, want the manifest's directory %s", dir, root)
			}
			if on := ownFiles(t, root); on > granted {
				t.Errorf("%d bytes of the copy's own files on disk, only %d granted", on, granted)
			}
			if need <= 0 || want < need {
				t.Errorf("Bookkeeping asked for %d..%d bytes", need, want)
			}
			granted += want
			return want, nil
		},
		Space: func(_ context.Context, _ string, s Sizes) error {
			if on := ownFiles(t, root); on > granted || on > s.Bookkeeping-s.BookkeepingNeed {
				t.Errorf("%d bytes of the copy's own files on disk at Space, %d granted, Space told %d written", on, granted, s.Bookkeeping-s.BookkeepingNeed)
			}
			sizes = s
			return nil
		},
	}
	res, err := Copy(context.Background(), f, dest, man, opt, &Progress{})
	if err != nil {
		t.Fatal(err)
	}
	const nameBytes = 3000 * 4 * 201
	if sizes.Bookkeeping < 2*nameBytes || sizes.BookkeepingNeed < nameBytes {
		t.Fatalf("Space was told bookkeeping %d, %d of it still to write; want at least the plan and the manifest (%d) and the manifest (%d)", sizes.Bookkeeping, sizes.BookkeepingNeed, 2*nameBytes, nameBytes)
	}
	if st, err := os.Stat(man); err != nil || res.ManifestBytes != st.Size() || st.Size() > sizes.BookkeepingNeed {
		t.Fatalf("manifest %v (%v): Result says %d bytes, Space was told its lines take at most %d", st, err, res.ManifestBytes, sizes.BookkeepingNeed)
	}
	if res.Files != 3000 || sizes.Total != 3004*blockSize(dest) {
		t.Fatalf("copied %d files, Space total %d; want 3000 and a block each, and 4 directories", res.Files, sizes.Total)
	}

	// A stingy grant, a byte more than needed: the meter counts what it
	// got, not what it wanted.
	root = t.TempDir()
	dest, man = filepath.Join(root, "data"), filepath.Join(root, "manifest")
	granted = 0
	stingy := opt
	stingy.Bookkeeping = func(_ context.Context, _ string, need, _ int64) (int64, error) {
		if on := ownFiles(t, root); on > granted {
			t.Errorf("%d bytes of the copy's own files on disk, only %d granted", on, granted)
		}
		granted += need + 1
		return need + 1, nil
	}
	stingy.Space = func(_ context.Context, _ string, s Sizes) error {
		if on := ownFiles(t, root); on > granted {
			t.Errorf("%d bytes of the copy's own files on disk at Space, only %d granted", on, granted)
		}
		return nil
	}
	if _, err := Copy(context.Background(), f, dest, man, stingy, &Progress{}); err != nil {
		t.Fatal(err)
	}

	// A fresh copy whose listing is sorted in runs of 64 KiB, refused
	// the room for more of them.
	root = t.TempDir()
	dest, man = filepath.Join(root, "data"), filepath.Join(root, "manifest")
	refuse := fmt.Errorf("%w: no room for the listing", fault.Exhausted)
	asked, spaceAsked := 0, false
	opt.sortMemory = 64 << 10
	opt.Bookkeeping = func(_ context.Context, _ string, _, want int64) (int64, error) {
		asked++
		if on := ownFiles(t, root); on > bookkeepingStep {
			t.Errorf("%d bytes of the copy's own files on disk, only %d granted", on, bookkeepingStep)
		}
		if asked > 1 {
			runs, _ := filepath.Glob(man + ".work/listing.run*")
			plans, _ := filepath.Glob(man + ".work/plan")
			if len(runs) == 0 || len(plans) != 0 {
				t.Errorf("the second ask came with %d listing runs and %d plans on disk; want it in the listing", len(runs), len(plans))
			}
			return 0, refuse
		}
		return want, nil
	}
	opt.Space = func(context.Context, string, Sizes) error { spaceAsked = true; return nil }
	if _, err := Copy(context.Background(), f, dest, man, opt, &Progress{}); !errors.Is(err, refuse) {
		t.Fatalf("copy refused room for its bookkeeping = %v, want the refusal as is", err)
	}
	if entries, _ := os.ReadDir(dest); len(entries) != 0 || spaceAsked || ownFiles(t, root) != 0 {
		t.Fatalf("refused copy: %d entries in dest, Space asked %v, %d bytes of own files left", len(entries), spaceAsked, ownFiles(t, root))
	}
}

// TestEntryBytesBoundsTheManifestLine: entryBytes is never less than the
// line the manifest writes, whatever the path holds.
func TestEntryBytesBoundsTheManifestLine(t *testing.T) {
	for _, path := range []string{"a", "dir/file.bin", `q"<>&\` + "\x01\u2028\xff", strings.Repeat("é", 300)} {
		var buf strings.Builder
		if err := json.NewEncoder(&buf).Encode(entry{Path: path, Fingerprint: "1234,2026-12-05 01:02:03 +0000 UTC,abcdef", Size: math.MaxInt64, MTimeNanos: math.MinInt64}); err != nil {
			t.Fatal(err)
		}
		if got := entryBytes(path, "1234,2026-12-05 01:02:03 +0000 UTC,abcdef"); got < int64(buf.Len()) {
			t.Errorf("entryBytes(%q) = %d, the line takes %d", path, got, buf.Len())
		}
	}
}

// TestCopyRemovesDirectoriesNoFileNeeds: a refresh after the bucket's
// keys moved removes the directories of the old ones (and empty ones a
// pod made), since the plan charges only the directories its files need;
// a bucket that changes its deep keys cannot pile up trees on the disk.
// Names that sort next to a directory's ("a!", "a-b", "a.b" beside "a/")
// keep what the plan holds.
func TestCopyRemovesDirectoriesNoFileNeeds(t *testing.T) {
	ctx := context.Background()
	f := memFs(t, map[string][]byte{"a/b/c/f": []byte("1"), "x/f": []byte("2"), "a-b/f": []byte("4"), "a.b/c/f": []byte("5"), "a!": []byte("6")})
	root := t.TempDir()
	dest, man := filepath.Join(root, "data"), filepath.Join(root, "manifest")
	if _, err := Copy(ctx, f, dest, man, Options{}, &Progress{}); err != nil {
		t.Fatal(err)
	}
	o, err := f.NewObject(ctx, "a/b/c/f")
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	put(t, f, "a/g", []byte("3"))
	if err := os.MkdirAll(filepath.Join(dest, "p", "q"), 0o755); err != nil {
		t.Fatal(err)
	}
	var total int64
	opt := Options{Space: func(_ context.Context, _ string, s Sizes) error { total = s.Total; return nil }}
	if _, err := Copy(ctx, f, dest, man, opt, &Progress{}); err != nil {
		t.Fatal(err)
	}
	var found []string
	err = filepath.WalkDir(dest, func(p string, d os.DirEntry, err error) error {
		if err == nil && p != dest {
			found = append(found, filepath.ToSlash(p[len(dest)+1:]))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a", "a/g", "a!", "a-b", "a-b/f", "a.b", "a.b/c", "a.b/c/f", "x", "x/f"}
	if !slices.Equal(found, want) || total != 10*blockSize(dest) {
		t.Fatalf("after the refresh dest holds %q, charged %d; want %q, %d", found, total, want, 10*blockSize(dest))
	}
}

// TestRefusedCopyKeepsItsManifest: a copy refused room for its plan (the
// new manifest already begun) leaves the previous copy's manifest as it
// was and no new one behind.
func TestRefusedCopyKeepsItsManifest(t *testing.T) {
	f := memFs(t, map[string][]byte{"a": []byte("1"), "b/c": []byte("2")})
	root := t.TempDir()
	dest, man := filepath.Join(root, "data"), filepath.Join(root, "manifest")
	if _, err := Copy(context.Background(), f, dest, man, Options{}, &Progress{}); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(man)
	if err != nil || len(before) == 0 {
		t.Fatalf("manifest after the first copy: %q, %v", before, err)
	}
	refuse := fmt.Errorf("%w: no room", fault.Exhausted)
	opt := Options{Bookkeeping: func(context.Context, string, int64, int64) (int64, error) {
		if _, err := os.Stat(man + ".tmp"); err != nil {
			t.Errorf("the new manifest was not begun when the plan asked: %v", err)
		}
		return 0, refuse
	}}
	if _, err := Copy(context.Background(), f, dest, man, opt, &Progress{}); !errors.Is(err, refuse) {
		t.Fatalf("refused copy = %v", err)
	}
	after, err := os.ReadFile(man)
	if err != nil || !bytes.Equal(after, before) {
		t.Fatalf("manifest after a refused copy: %q, %v; want it unchanged", after, err)
	}
	if _, err := os.Stat(man + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused copy left its new manifest: %v", err)
	}
}

// TestFreeUpTo: FreeUpTo grants what the disk has free up to want, at
// least need, and refuses a need the disk cannot hold.
func TestFreeUpTo(t *testing.T) {
	dir := t.TempDir()
	if got, err := FreeUpTo(context.Background(), dir, 1, 4096); err != nil || got != 4096 {
		t.Fatalf("FreeUpTo(1, 4096) = %d, %v", got, err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if got, err := FreeUpTo(context.Background(), dir, 1, math.MaxInt64); err != nil || got > free+free/10 || got < 1 {
		t.Fatalf("FreeUpTo(1, max) = %d, %v; want at most about the %d bytes free", got, err, free)
	}
	if _, err := FreeUpTo(context.Background(), dir, math.MaxInt64, math.MaxInt64); !errors.Is(err, fault.Exhausted) {
		t.Fatalf("FreeUpTo of more than the disk = %v, want fault.Exhausted", err)
	}
}
