package stage

import (
	"os"
	"path/filepath"
	"testing"
)

// TestCachedHoldsFiles: a cache is taken for empty (Abandon lets its
// stage go) only when nothing but directories is in it, lost+found
// aside, and its image, if it has one, is mounted there to look into.
func TestCachedHoldsFiles(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir, img string)
		want  bool
	}{
		{"no cache", func(*testing.T, string, string) {}, false},
		{"empty directories", func(t *testing.T, dir, _ string) {
			mkdir(t, filepath.Join(dir, "vfs", "remote", "a"))
			mkdir(t, filepath.Join(dir, "vfsMeta", "remote"))
		}, false},
		{"only lost+found holds a file", func(t *testing.T, dir, _ string) {
			write(t, filepath.Join(dir, "lost+found", "#12"))
		}, false},
		{"a data file", func(t *testing.T, dir, _ string) {
			write(t, filepath.Join(dir, "vfs", "remote", "a", "out.txt"))
		}, true},
		{"a symlink", func(t *testing.T, dir, _ string) {
			mkdir(t, dir)
			if err := os.Symlink("nowhere", filepath.Join(dir, "link")); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"an image not mounted", func(t *testing.T, dir, img string) {
			mkdir(t, dir)
			write(t, img)
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Cached{CacheRoot: t.TempDir()}
			tc.setup(t, c.CacheDir("vol"), c.imagePath("vol"))
			got, err := c.holdsFiles("vol")
			if err != nil || got != tc.want {
				t.Fatalf("holdsFiles = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func mkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, path string) {
	t.Helper()
	mkdir(t, filepath.Dir(path))
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
}
