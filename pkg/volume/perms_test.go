package volume

import (
	"os"
	"testing"
)

func TestModes(t *testing.T) {
	for _, c := range []struct {
		umask     uint32
		file, dir os.FileMode
	}{
		{0, 0o666, 0o777},
		{0o022, 0o644, 0o755},
		{0o077, 0o600, 0o700},
		{0o007, 0o660, 0o770},
		{0o011, 0o666, 0o777},
		{0o133, 0o644, 0o755},
		{0o777, 0, 0},
	} {
		if f, d := FileMode(c.umask), DirMode(c.umask); f != c.file || d != c.dir {
			t.Errorf("umask %03o: files %v dirs %v, want %v %v", c.umask, f, d, c.file, c.dir)
		}
	}
}
