package fuseserver

import (
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
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
	for _, c := range []struct {
		name      string
		path      string
		moves     []pathMove // to "": an unlink
		want      string
		cancelled bool
	}{
		{"the file renamed", "d/f", []pathMove{{from: "d/f", to: "d/g"}}, "d/g", false},
		{"its directory renamed", "d/e/f", []pathMove{{from: "d", to: "x"}}, "x/e/f", false},
		{"a name that only starts the same", "d/f2", []pathMove{{from: "d/f", to: "d/g"}}, "d/f2", false},
		{"renamed twice", "f", []pathMove{{from: "f", to: "g"}, {from: "g", to: "h/i"}}, "h/i", false},
		{"unlinked", "d/f", []pathMove{{from: "d/f"}}, "d/f", true},
		{"another file unlinked", "d/f", []pathMove{{from: "d/g"}}, "d/f", false},
		{"replaced by a rename", "d/f", []pathMove{{from: "d/g", to: "d/f"}}, "d/f", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := &ptSettle{path: c.path}
			for _, mv := range c.moves {
				s.apply(mv)
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

// TestRenamesThroughTheServerMoveSettles: renames and unlinks through the
// server, with node IDs as the kernel sends them, move and cancel the
// pending settles, each once, whether the settle's path was read (with
// the table's move count, as at a FORGET) before a rename or after it.
func TestRenamesThroughTheServerMoveSettles(t *testing.T) {
	track := newTrackFS(renameFS{fuse.NewDefaultRawFileSystem()})
	paths := &track.paths
	for _, n := range []struct {
		id, parent uint64
		name       string
	}{{2, 1, "d"}, {3, 1, "x"}, {4, 2, "f"}, {5, 2, "g"}, {6, 3, "h"}, {7, 3, "k"}} {
		paths.learn(n.id, n.parent, n.name)
	}
	p := &passthroughFS{RawFileSystem: track, paths: paths, hidden: &hiddenKeys{}, log: slog.New(slog.DiscardHandler)}
	read := func(id uint64) (*ptSettle, uint64) {
		path, ok, seen := paths.attachedPathSeq(id)
		if !ok {
			t.Fatalf("node %d has no path", id)
		}
		return &ptSettle{path: path}, seen
	}
	waiting, seen := read(4) // d/f, pending before the renames
	p.track(waiting, seen)
	late, lateSeen := read(5) // d/g, read before its rename, tracked after
	gone, seen := read(6)     // x/h
	p.track(gone, seen)

	if st := p.Rename(nil, &fuse.RenameIn{InHeader: fuse.InHeader{NodeId: 2}, Newdir: 3}, "f", "f2"); !st.Ok() {
		t.Fatal(st)
	}
	if st := p.Rename(nil, &fuse.RenameIn{InHeader: fuse.InHeader{NodeId: 2}, Newdir: 1}, "g", "top"); !st.Ok() {
		t.Fatal(st)
	}
	after, afterSeen := read(4) // x/f2, read after the renames
	p.track(late, lateSeen)
	p.track(after, afterSeen)
	if st := p.Unlink(nil, &fuse.InHeader{NodeId: 3}, "h"); !st.Ok() {
		t.Fatal(st)
	}
	if st := p.Rename(nil, &fuse.RenameIn{InHeader: fuse.InHeader{NodeId: 1}, Newdir: 3}, "zz", "y"); !st.Ok() {
		t.Fatal(st) // a directory entry the table does not know: nothing moves
	}
	for _, c := range []struct {
		s         *ptSettle
		want      string
		cancelled bool
	}{{waiting, "x/f2", false}, {late, "top", false}, {after, "x/f2", false}, {gone, "x/h", true}} {
		if c.s.path != c.want || c.s.cancelled != c.cancelled {
			t.Errorf("settle at %q cancelled %v, want %q %v", c.s.path, c.s.cancelled, c.want, c.cancelled)
		}
	}
	for range 4 {
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

func TestConflictNamesCutAtACharacter(t *testing.T) {
	long := strings.Repeat("é", 150) // 300 bytes, two per character
	name := conflictName(long, time.Unix(0, 0), 0)
	if !utf8.ValidString(name) || len(name) > 255 {
		t.Fatalf("conflict name %q (%d bytes)", name, len(name))
	}
}

// TestRenameRefusesExchangeAndWhiteout: replaceGuard refuses the flags
// rclone ignores before any inner layer sees the rename, and a rename
// under a directory of unknown path (it could not be checked); the path
// table does not move the node.
func TestRenameRefusesExchangeAndWhiteout(t *testing.T) {
	track := newTrackFS(renameFS{fuse.NewDefaultRawFileSystem()})
	track.paths.learn(2, 1, "f")
	g := replaceGuard{RawFileSystem: track, paths: &track.paths, log: slog.New(slog.DiscardHandler)}
	for _, flags := range []uint32{unix.RENAME_EXCHANGE, unix.RENAME_WHITEOUT, unix.RENAME_EXCHANGE | unix.RENAME_NOREPLACE} {
		if st := g.Rename(nil, &fuse.RenameIn{InHeader: fuse.InHeader{NodeId: 1}, Newdir: 1, Flags: flags}, "f", "g"); st != fuse.EINVAL {
			t.Errorf("rename with flags %#x: %v, want EINVAL", flags, st)
		}
	}
	if st := g.Rename(nil, &fuse.RenameIn{InHeader: fuse.InHeader{NodeId: 1}, Newdir: 9, Flags: unix.RENAME_NOREPLACE}, "f", "g"); st != fuse.EIO {
		t.Errorf("rename without replacing into an unknown directory: %v, want EIO", st)
	}
	if p, _ := track.paths.path(2); p != "f" {
		t.Fatalf("a refused rename moved the node to %q", p)
	}
}

// TestRenameOfANameWithoutANodeIsLogged: a rename is logged for the
// settles (which follow paths) also when the table holds no node of the
// source name.
func TestRenameOfANameWithoutANodeIsLogged(t *testing.T) {
	track := newTrackFS(renameFS{fuse.NewDefaultRawFileSystem()})
	track.paths.learn(2, 1, "d")
	if st := track.Rename(nil, &fuse.RenameIn{InHeader: fuse.InHeader{NodeId: 1}, Newdir: 2}, "x", "y"); !st.Ok() {
		t.Fatal(st)
	}
	moves, whole := track.paths.movesAfter(0)
	if !whole || len(moves) != 1 || moves[0].from != "x" || moves[0].to != "d/y" {
		t.Fatalf("moves %+v (whole %v), want one from x to d/y", moves, whole)
	}
	s := &ptSettle{path: "x/f"}
	s.apply(moves[0])
	if s.path != "d/y/f" {
		t.Fatalf("a settle below the renamed name is at %q", s.path)
	}
}
