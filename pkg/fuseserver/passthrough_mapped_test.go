package fuseserver

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

func TestRetryAfterDoublesUpToTheCap(t *testing.T) {
	want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 5 * time.Minute, 5 * time.Minute}
	for i, w := range want {
		if got := retryAfter(i + 1); got != w {
			t.Errorf("retryAfter(%d) = %v, want %v", i+1, got, w)
		}
	}
}

func TestConflictNames(t *testing.T) {
	at := time.Date(2026, 12, 4, 13, 5, 9, 0, time.FixedZone("x", 3600))
	for i, want := range []string{"d/f.bin.conflict-20261204T120509Z", "d/f.bin.conflict-20261204T120509Z-1", "d/f.bin.conflict-20261204T120509Z-2"} {
		if got := conflictName("d/f.bin", at, i); got != want {
			t.Errorf("conflictName(%d) = %q, want %q", i, got, want)
		}
	}
}

// TestSettlesFollowRenamesAndUnlinks: a pending settle follows its file
// through a rename of the file or of a directory above it, and is
// cancelled when the file is unlinked or replaced by a rename.
func TestSettlesFollowRenamesAndUnlinks(t *testing.T) {
	type step struct {
		from, to string
		exchange bool
	}
	for _, c := range []struct {
		name      string
		path      string
		steps     []step
		want      string
		cancelled bool
	}{
		{"the file renamed", "d/f", []step{{"d/f", "d/g", false}}, "d/g", false},
		{"its directory renamed", "d/e/f", []step{{"d", "x", false}}, "x/e/f", false},
		{"a name that only starts the same", "d/f2", []step{{"d/f", "d/g", false}}, "d/f2", false},
		{"renamed twice", "f", []step{{"f", "g", false}, {"g", "h/i", false}}, "h/i", false},
		{"unlinked", "d/f", []step{{"d/f", "", false}}, "d/f", true},
		{"another file unlinked", "d/f", []step{{"d/g", "", false}}, "d/f", false},
		{"replaced by a rename", "d/f", []step{{"d/g", "d/f", false}}, "d/f", true},
		{"exchanged", "d/f", []step{{"d/g", "d/f", true}}, "d/g", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := &passthroughFS{}
			s := &ptSettle{path: c.path}
			p.pending = []*ptSettle{s}
			for _, st := range c.steps {
				p.moved(st.from, st.to, st.exchange)
			}
			if s.path != c.want || s.cancelled != c.cancelled {
				t.Fatalf("path %q cancelled %v, want %q %v", s.path, s.cancelled, c.want, c.cancelled)
			}
		})
	}
}

func TestParentOf(t *testing.T) {
	for name, want := range map[string]string{"f": "", "d/f": "d", "d/e/f": "d/e"} {
		dir, ok := parentOf(name)
		if dir != want || ok != (want != "") {
			t.Errorf("parentOf(%q) = %q, %v", name, dir, ok)
		}
	}
}

// renameFS answers every rename and unlink with OK.
type renameFS struct{ fuse.RawFileSystem }

func (renameFS) Rename(<-chan struct{}, *fuse.RenameIn, string, string) fuse.Status { return fuse.OK }
func (renameFS) Unlink(<-chan struct{}, *fuse.InHeader, string) fuse.Status         { return fuse.OK }

// TestRenamesThroughTheServerMoveSettles: Rename and Unlink of the
// server, with node paths as the kernel names them, move and cancel the
// pending settles, including one whose path was read before the rename
// and that was tracked after it (a FORGET racing the rename).
func TestRenamesThroughTheServerMoveSettles(t *testing.T) {
	paths := &pathTable{nodes: map[uint64]*pnode{}, names: map[pkey]uint64{}}
	paths.learn(2, 1, "d")
	paths.learn(3, 1, "x")
	p := &passthroughFS{RawFileSystem: renameFS{fuse.NewDefaultRawFileSystem()}, paths: paths, log: slog.New(slog.DiscardHandler)}
	waiting := &ptSettle{path: "d/f"}
	p.track(waiting, p.movesSeen())
	late := &ptSettle{path: "d/g"} // read before the rename below
	seen := p.movesSeen()
	gone := &ptSettle{path: "x/h"}
	p.track(gone, p.movesSeen())

	if st := p.Rename(nil, &fuse.RenameIn{InHeader: fuse.InHeader{NodeId: 2}, Newdir: 3}, "f", "f2"); !st.Ok() {
		t.Fatal(st)
	}
	if st := p.Rename(nil, &fuse.RenameIn{InHeader: fuse.InHeader{NodeId: 2}, Newdir: 1}, "g", "top"); !st.Ok() {
		t.Fatal(st)
	}
	p.track(late, seen)
	if st := p.Unlink(nil, &fuse.InHeader{NodeId: 3}, "h"); !st.Ok() {
		t.Fatal(st)
	}
	if waiting.path != "x/f2" || late.path != "top" || !gone.cancelled || waiting.cancelled || late.cancelled {
		t.Fatalf("settles at %q %q, cancelled %v %v %v", waiting.path, late.path, waiting.cancelled, late.cancelled, gone.cancelled)
	}
	for range 3 {
		p.settling.Done()
	}
}

func TestConflictNamesOfLongNamesFit(t *testing.T) {
	long := strings.Repeat("n", 250)
	name := conflictName("d/"+long, time.Unix(0, 0), 12)
	base := name[strings.LastIndexByte(name, '/')+1:]
	if len(base) > 255 || !strings.HasPrefix(name, "d/"+long[:200]+"~") || conflictName("d/"+long+"x", time.Unix(0, 0), 12) == name {
		t.Fatalf("conflict name %q (%d bytes in its last element)", name, len(base))
	}
}
