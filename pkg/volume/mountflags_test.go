package volume

import (
	"errors"
	"testing"
	"time"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
)

// TestParseMountFlags: every documented option parses to its field, in
// one flag or several (nosuid and nodev, always in effect, to none); a
// value where none is taken, a bad number and an unknown option (suid and
// dev too) are fault.Invalid.
func TestParseMountFlags(t *testing.T) {
	got, err := ParseMountFlags([]string{"ro,exec", "uid=1000", "gid=2000,umask=027", "dir-cache-time=5s", "rw,defaults", "nosuid,nodev"})
	if err != nil {
		t.Fatal(err)
	}
	want := MountFlags{ReadOnly: true, Exec: true, UID: 1000, GID: 2000, Umask: 0o027, DirCacheTime: 5 * time.Second}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if s := got.String(); s != "ro,uid=1000,gid=2000,umask=027,dir-cache-time=5s,exec" {
		t.Errorf("String() = %q", s)
	}
	for _, bad := range []string{"exec=1", "ro=yes", "uid=x", "umask=1000", "dir-cache-time=48h", "noexec", "suid", "dev", "allow_other"} {
		if _, err := ParseMountFlags([]string{bad}); !errors.Is(err, fault.Invalid) {
			t.Errorf("%q: %v, want fault.Invalid", bad, err)
		}
	}
}
