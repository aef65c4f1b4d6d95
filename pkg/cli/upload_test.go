package cli

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
)

// TestUploadDirs: where each local path of an upload goes in the bucket,
// and which sets of paths are refused before anything is sent.
func TestUploadDirs(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"data", "other/data", "work", ".bucket-csi"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"notes.txt", "other/notes.txt", "other/.bucket-csi"} {
		if err := os.WriteFile(filepath.Join(root, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	at := func(p string) string { return filepath.Join(root, p) }
	t.Chdir(at("work"))
	for _, c := range []struct {
		paths []string
		want  []string
	}{
		{[]string{at("data")}, []string{""}},
		{[]string{at(".bucket-csi")}, []string{""}}, // its contents, to the root
		{[]string{at("notes.txt")}, []string{""}},
		{[]string{at("notes.txt"), at("data") + "/"}, []string{"", "data"}},
		{[]string{".", at("data")}, []string{"work", "data"}},
	} {
		got, err := uploadDirs(c.paths)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("uploadDirs(%q) = %q, %v; want %q", c.paths, got, err, c.want)
		}
	}
	for _, paths := range [][]string{
		{at("missing")},
		{at("data"), at("other/data")},
		{at("notes.txt"), at("other/notes.txt")},
		{"/", at("data")},
		{at(".bucket-csi"), at("data")},
		{at("other/.bucket-csi")},
	} {
		if _, err := uploadDirs(paths); !errors.Is(err, fault.Invalid) {
			t.Errorf("uploadDirs(%q) = %v, want an Invalid error", paths, err)
		}
	}
}
