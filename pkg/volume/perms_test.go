package volume

import (
	"os"
	"testing"
)

func TestModes(t *testing.T) {
	for _, c := range []struct {
		umask           uint32
		file, exec, dir os.FileMode
	}{
		{0, 0o666, 0o777, 0o777},
		{0o022, 0o644, 0o755, 0o755},
		{0o077, 0o600, 0o700, 0o700},
		{0o007, 0o660, 0o770, 0o770},
		{0o011, 0o666, 0o777, 0o777},
		{0o133, 0o644, 0o755, 0o755},
		{0o777, 0, 0, 0},
	} {
		if f, x, d := FileMode(c.umask, false), FileMode(c.umask, true), DirMode(c.umask); f != c.file || x != c.exec || d != c.dir {
			t.Errorf("umask %03o: files %v (exec %v) dirs %v, want %v (%v) %v", c.umask, f, x, d, c.file, c.exec, c.dir)
		}
	}
}
