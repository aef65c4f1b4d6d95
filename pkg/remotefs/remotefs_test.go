package remotefs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/rclone/rclone/fs/config"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
)

// TestOpenPerCall: the filesystem gets its name and options, credential
// files land 0600 in the private directory, and nothing is left in
// rclone's process-wide configuration.
func TestOpenPerCall(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	private := filepath.Join(t.TempDir(), "private")
	opts := map[string]string{"type": "local", "description": "{file:note}", "file:note": "secret"}
	f, err := Open(context.Background(), opts, "volabc", private, dir)
	if err != nil {
		t.Fatal(err)
	}
	if f.Name() != "volabc" || f.Root() != dir {
		t.Fatalf("Fs %s:%s, want volabc:%s", f.Name(), f.Root(), dir)
	}
	if _, err := f.NewObject(context.Background(), "f"); err != nil {
		t.Fatalf("object through the Fs: %v", err)
	}
	st, err := os.Stat(filepath.Join(private, "note"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("credential file: %v %v", st, err)
	}
	if config.Data().HasSection("volabc") {
		t.Fatal("the options were written into rclone's global config")
	}
	if _, err := Open(context.Background(), map[string]string{"type": "nosuch"}, "v", private, dir); err == nil {
		t.Fatal("an unknown backend type opened")
	}
}

// TestOpenErrorsHaveAKind: every error Open returns has a fault kind, so
// COPY and `storage upload` pass it on as it is: an unknown backend type
// is Invalid, an error of rclone's or of the credential files
// Unavailable.
func TestOpenErrorsHaveAKind(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what    string
		opts    map[string]string
		private string
		want    error
	}{
		{"an unknown backend type", map[string]string{"type": "nosuch"}, dir, fault.Invalid},
		{"an option rclone cannot parse", map[string]string{"type": "local", "copy_links": "perhaps"}, dir, fault.Unavailable},
		{"a credential file that cannot be written", map[string]string{"type": "local", "description": "{file:note}", "file:note": "secret"}, filepath.Join(file, "private"), fault.Unavailable},
	} {
		f, err := Open(context.Background(), c.opts, "v", c.private, dir)
		if f != nil || !errors.Is(err, c.want) {
			t.Errorf("%s: Open = %v, %v; want an error of kind %v", c.what, f, err, c.want)
		}
	}
}
