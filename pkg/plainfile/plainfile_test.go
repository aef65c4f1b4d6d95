package plainfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestOpenLikeOpenFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	f, err := Open(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	fdFlags, err := unix.FcntlInt(f.Fd(), unix.F_GETFD, 0)
	if err != nil || fdFlags&unix.FD_CLOEXEC == 0 {
		t.Errorf("FD_CLOEXEC not set: flags %#x, %v", fdFlags, err)
	}
	flFlags, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	if err != nil || flFlags&unix.O_NONBLOCK != 0 {
		t.Errorf("descriptor is non-blocking: flags %#x, %v", flFlags, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640&^umask() || fi.Size() != 5 {
		t.Errorf("made %v of %d bytes, want %v of 5", fi.Mode().Perm(), fi.Size(), os.FileMode(0o640&^umask()))
	}

	_, err = Open(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	var pe *os.PathError
	if !errors.Is(err, fs.ErrExist) || !errors.As(err, &pe) || pe.Op != "open" || pe.Path != path {
		t.Errorf("O_EXCL of an existing file = %v, want an *os.PathError for %s that is fs.ErrExist", err, path)
	}
	if _, err := Open(filepath.Join(dir, "missing"), os.O_RDONLY, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing file = %v, want fs.ErrNotExist", err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(link, os.O_WRONLY|unix.O_NOFOLLOW, 0); !errors.Is(err, unix.ELOOP) {
		t.Errorf("O_NOFOLLOW on a link = %v, want ELOOP", err)
	}
	r, err := Open(path, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, 8)
	if n, err := r.Read(buf); err != nil || string(buf[:n]) != "hello" {
		t.Errorf("read %q, %v; want hello", buf[:n], err)
	}
}

// The mode of a created file is os.OpenFile's, special bits included.
func TestOpenModeLikeOpenFile(t *testing.T) {
	dir := t.TempDir()
	for i, perm := range []os.FileMode{0o640, 0o640 | os.ModeSticky, 0o750 | os.ModeSetgid} {
		ours, theirs := filepath.Join(dir, fmt.Sprint("ours", i)), filepath.Join(dir, fmt.Sprint("theirs", i))
		for path, open := range map[string]func(string, int, os.FileMode) (*os.File, error){ours: Open, theirs: os.OpenFile} {
			f, err := open(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
		a, errA := os.Stat(ours)
		b, errB := os.Stat(theirs)
		if errA != nil || errB != nil || a.Mode() != b.Mode() {
			t.Errorf("perm %v: made %v, os.OpenFile %v (%v, %v)", perm, a.Mode(), b.Mode(), errA, errB)
		}
	}
}

func umask() os.FileMode {
	m := unix.Umask(0)
	unix.Umask(m)
	return os.FileMode(m)
}

// BenchmarkOpen compares an open and close of a regular file here and
// through os.OpenFile (run them in one session: the ratio is the figure).
// It is what shows the point of the package: the descriptor's state is
// the same either way (TestOpenLikeOpenFile), only the system calls
// differ.
func BenchmarkOpen(b *testing.B) {
	path := filepath.Join(b.TempDir(), "f")
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		open func(string, int, os.FileMode) (*os.File, error)
	}{{"plainfile", Open}, {"os.OpenFile", os.OpenFile}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				f, err := c.open(path, os.O_RDONLY, 0)
				if err != nil {
					b.Fatal(err)
				}
				f.Close()
			}
		})
	}
}
