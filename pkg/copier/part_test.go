package copier

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Whatever is at a download file's name when the download starts is
// never opened: a FIFO would block the open for writing until a reader
// came, stalling the copy's worker for good.
func TestCreatePartNeverOpensWhatIsThere(t *testing.T) {
	dir := t.TempDir()
	final := filepath.Join(dir, "a.txt")
	part := partPath(final)
	if err := unix.Mkfifo(part, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		f, err := createPart(final)
		if err == nil {
			var st os.FileInfo
			if st, err = f.Stat(); err == nil && !st.Mode().IsRegular() {
				err = fmt.Errorf("created a %v", st.Mode())
			}
			f.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		// Open the FIFO's other end, so the blocked open returns.
		if r, err := os.OpenFile(part, os.O_RDONLY|unix.O_NONBLOCK, 0); err == nil {
			defer r.Close()
		}
		t.Fatal("createPart opened the FIFO at the download file's name")
	}

	// A directory with files in it cannot be removed: the create's
	// EEXIST, which skips the object.
	if err := os.Remove(part); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(part, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if f, err := createPart(final); !localSkip(err) {
		if f != nil {
			f.Close()
		}
		t.Fatalf("createPart over a directory = %v, want an error localSkip skips", err)
	}
}
