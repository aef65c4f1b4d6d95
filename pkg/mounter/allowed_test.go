package mounter

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/fuseproto"
)

// TestAllowedPaths: the mounter host accepts only clean absolute paths
// within its directories, on path boundaries and after resolving symlinks.
func TestAllowedPaths(t *testing.T) {
	root := t.TempDir()
	kubelet, state, outside := filepath.Join(root, "kubelet"), filepath.Join(root, "state"), filepath.Join(root, "outside")
	for _, d := range []string{kubelet, state, outside, kubelet + "-evil"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(kubelet, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(state, "vol"), filepath.Join(kubelet, "inside")); err != nil {
		t.Fatal(err)
	}
	allowed, err := NewAllowed([]string{kubelet, state})
	if err != nil {
		t.Fatal(err)
	}
	good := func() *fuseproto.Config {
		return &fuseproto.Config{MountPoint: filepath.Join(kubelet, "plugins/x/globalmount"), CacheDir: filepath.Join(state, "cache/v1"),
			PrivateDir: filepath.Join(state, "volumes/v1/private"), ControlSocket: filepath.Join(state, "volumes/v1/control.sock")}
	}
	goodLog := filepath.Join(state, "volumes/v1/mounter.log")
	if err := allowed.Check(good(), goodLog); err != nil {
		t.Fatalf("paths inside (not yet existing) refused: %v", err)
	}
	inside := good()
	inside.MountPoint = filepath.Join(kubelet, "inside", "mnt") // a symlink to another allowed directory
	if err := allowed.Check(inside, goodLog); err != nil {
		t.Fatalf("symlink within the allowed directories refused: %v", err)
	}
	for name, mutate := range map[string]func(c *fuseproto.Config, log *string){
		"mount point outside":           func(c *fuseproto.Config, _ *string) { c.MountPoint = filepath.Join(outside, "mnt") },
		"mount point is an allowed dir": func(c *fuseproto.Config, _ *string) { c.MountPoint = kubelet },
		"mount point /":                 func(c *fuseproto.Config, _ *string) { c.MountPoint = "/" },
		"prefix but not below":          func(c *fuseproto.Config, _ *string) { c.MountPoint = kubelet + "-evil/mnt" },
		"dot-dot":                       func(c *fuseproto.Config, _ *string) { c.MountPoint = kubelet + "/../outside/mnt" },
		"relative":                      func(c *fuseproto.Config, _ *string) { c.MountPoint = "kubelet/mnt" },
		"symlink escaping":              func(c *fuseproto.Config, _ *string) { c.MountPoint = filepath.Join(kubelet, "escape", "mnt") },
		"cache dir outside":             func(c *fuseproto.Config, _ *string) { c.CacheDir = "/etc/cache" },
		"private dir outside":           func(c *fuseproto.Config, _ *string) { c.PrivateDir = "/root/.ssh" },
		"control socket outside":        func(c *fuseproto.Config, _ *string) { c.ControlSocket = "/run/x.sock" },
		"log path outside":              func(_ *fuseproto.Config, l *string) { *l = "/etc/cron.d/job" },
		"no log path":                   func(_ *fuseproto.Config, l *string) { *l = "" },
	} {
		t.Run(name, func(t *testing.T) {
			c, log := good(), goodLog
			mutate(c, &log)
			err := allowed.Check(c, log)
			if !errors.Is(err, fault.Invalid) {
				t.Fatalf("got %v, want fault.Invalid", err)
			}
			if !strings.Contains(err.Error(), kubelet) || !strings.Contains(err.Error(), "--allowed-dirs") {
				t.Fatalf("refusal does not say what is allowed: %v", err)
			}
			if fault.FromKind(fault.Kind(err)) != fault.Invalid {
				t.Fatalf("kind does not survive the wire: %q", fault.Kind(err))
			}
		})
	}
	if _, err := NewAllowed([]string{"relative"}); err == nil {
		t.Fatal("relative allowed directory accepted")
	}
}
