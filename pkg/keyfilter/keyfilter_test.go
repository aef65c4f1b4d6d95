package keyfilter

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fstest/mockdir"
	"github.com/rclone/rclone/fstest/mockobject"
)

// TestFilter: entries a store's listing can hold but no directory can show
// are dropped; the rest stay, in order.
func TestFilter(t *testing.T) {
	long := strings.Repeat("n", 256)
	entries := fs.DirEntries{
		mockobject.Object("a/ok.txt"),
		mockdir.New("a/"),   // from a key "a//b"
		mockdir.New("a/."),  // from a key "a/./b"
		mockdir.New("a/.."), // from a key "a/../b"
		mockdir.New("a/．．"), // the same, as rclone shows it
		mockobject.Object("a/" + long),
		mockobject.Object("a/dup"), // a key "a/dup" next to keys "a/dup/..."
		mockdir.New("a/dup"),
		mockobject.Object("a/x\x00y"),
		mockobject.Object(strings.Repeat("m", 255)), // not in a/
		mockobject.Object("a/" + strings.Repeat("m", 255)),
	}
	var got []string
	for _, e := range Filter("a", entries) {
		got = append(got, fmt.Sprintf("%T %s", e, e.Remote()))
	}
	want := []string{"mockobject.Object a/ok.txt", "*fs.Dir a/dup", "mockobject.Object a/" + strings.Repeat("m", 255)}
	if !slices.Equal(got, want) {
		t.Fatalf("Filter kept %q, want %q", got, want)
	}
}

// TestWrapListsFiltered: List of the wrapped Fs filters, and the wrapper
// unwraps to the base Fs.
func TestWrapListsFiltered(t *testing.T) {
	base := &listFs{entries: fs.DirEntries{mockobject.Object("ok"), mockdir.New(".."), mockobject.Object("")}}
	f := Wrap(base, nil)
	got, err := f.List(context.Background(), "")
	if err != nil || len(got) != 1 || got[0].Remote() != "ok" {
		t.Fatalf("List = %v %v, want only ok", got, err)
	}
	hidden := Wrap(&listFs{entries: fs.DirEntries{mockobject.Object("ok"), mockdir.New(".meta")}}, func(r string) bool { return r == ".meta" })
	got, err = hidden.List(context.Background(), "")
	if err != nil || len(got) != 1 || got[0].Remote() != "ok" {
		t.Fatalf("List with hide = %v %v, want only ok", got, err)
	}
	if f.Features().UnWrap() != fs.Fs(base) {
		t.Fatal("UnWrap does not return the base Fs")
	}
}

// listFs is an Fs listing fixed entries.
type listFs struct {
	fs.Fs
	entries fs.DirEntries
}

func (l *listFs) List(context.Context, string) (fs.DirEntries, error) {
	return slices.Clone(l.entries), nil
}
func (l *listFs) Features() *fs.Features   { return &fs.Features{} }
func (l *listFs) Precision() time.Duration { return time.Second }
