package fuseserver

import (
	"testing"
	"time"
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
