package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

// TestWriteReplaces: Write creates and replaces a 0600 file and leaves no
// temporary file behind.
func TestWriteReplaces(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	for _, data := range []string{"first", "second"} {
		if err := Write(p, []byte(data)); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != data {
			t.Fatalf("read %q, %v; want %q", got, err, data)
		}
	}
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v; want 0600", st.Mode(), err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("%d files in the directory, want 1", len(entries))
	}
	if err := Write(filepath.Join(dir, "missing", "x"), nil); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}

// TestWriteJSON: the value reads back whole, and a value JSON cannot
// encode leaves the file as it was.
func TestWriteJSON(t *testing.T) {
	p := filepath.Join(t.TempDir(), "v.json")
	if err := WriteJSON(p, map[string]int{"a": 1}); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(p, func() {}); err == nil {
		t.Fatal("encoding a func succeeded")
	}
	got, err := os.ReadFile(p)
	if err != nil || string(got) != "{\n  \"a\": 1\n}" {
		t.Fatalf("read %q, %v", got, err)
	}
}
