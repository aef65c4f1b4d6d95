package copier

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
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
	opt := Options{Space: func(_ context.Context, _ string, total, _, _ int64) error {
		asked = append(asked, total)
		return refuse
	}}
	if _, err := Copy(context.Background(), f, dest, man, opt, &Progress{}); !errors.Is(err, refuse) {
		t.Fatalf("refused copy = %v", err)
	}
	whole := 2 * blockSize(dest) // two files of under a block each
	if entries, _ := os.ReadDir(dest); len(entries) != 0 || len(asked) != 1 || asked[0] != whole {
		t.Fatalf("refused copy: %d entries in dest, Space asked %v (want once for %d)", len(entries), asked, whole)
	}
	opt.Space = func(_ context.Context, _ string, total, _, _ int64) error { asked = append(asked, total); return nil }
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
// 1,000 empty ones are charged a block each, with their count, not 2,000
// bytes: a bucket of many tiny objects cannot fill a node's disk or its
// inodes on a reservation of almost nothing.
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
	opt := Options{Space: func(_ context.Context, _ string, tot, nd, n int64) error { total, need, files = tot, nd, n; return nil }}
	if _, err := Copy(context.Background(), f, filepath.Join(root, "data"), filepath.Join(root, "manifest"), opt, &Progress{}); err != nil {
		t.Fatal(err)
	}
	block := blockSize(root)
	if total != 3000*block || need != 3000*block || files != 3000 {
		t.Fatalf("Space asked total %d, need %d for %d files; want %d, %d, 3000", total, need, files, 3000*block, 3000*block)
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
