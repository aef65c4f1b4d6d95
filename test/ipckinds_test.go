package test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bucket-csi/bucket-csi/internal/localenv"
	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/fuseproto"
	"github.com/bucket-csi/bucket-csi/pkg/mounter"
	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// TestFUSEServerErrorKinds: an error of the real FUSE server process keeps
// its fault kind across the process boundaries (its status line on fd 3,
// and the mounter host's reply), started directly and through a mounter
// host: a server that cannot open the volume's backend (an unknown rclone
// type) answers fault.Invalid (InvalidArgument: final, never retried), a
// host refusing a path answers fault.Invalid, and a mount that fails for a
// reason with no kind stays fault.Unavailable (retried). The secret in the
// config never appears in an error.
func TestFUSEServerErrorKinds(t *testing.T) {
	testenv.RequireFUSE(t)
	exe, err := localenv.Binary("BUCKET_CSI_MOUNTER_BIN", "bucket-csi-mounter")
	if err != nil {
		testenv.Missing(t, "%v", err)
	}
	dir := t.TempDir()
	sock := filepath.Join(t.TempDir(), "mounter.sock")
	startMounterHost(t, sock, dir)
	const secret = "s3cr3t-never-shown"
	config := func(name, backend string) *fuseproto.Config {
		mp := filepath.Join(dir, name, "mnt")
		if err := os.MkdirAll(mp, 0o750); err != nil {
			t.Fatal(err)
		}
		return &fuseproto.Config{Format: fuseproto.ConfigFormat, VolumeID: "vol-" + name, MountPoint: mp, Bucket: "b",
			Remote: map[string]string{"type": backend, "secret_access_key": secret}, Redact: []string{secret}, ReadAhead: true,
			PrivateDir: filepath.Join(dir, name, "private")}
	}
	for _, sup := range []struct {
		name string
		s    *mounter.Supervisor
	}{
		{"local", &mounter.Supervisor{Exe: exe}},
		{"mounter host", &mounter.Supervisor{Host: sock}},
	} {
		for _, tc := range []struct {
			name string
			cfg  func() *fuseproto.Config
			want error
		}{
			{"unknown backend", func() *fuseproto.Config { return config(sup.name+"-backend", "nosuchbackend") }, fault.Invalid},
			{"mount point is a file", func() *fuseproto.Config {
				c := config(sup.name+"-file", "local")
				c.MountPoint = filepath.Join(dir, sup.name+"-file", "file")
				if err := os.WriteFile(c.MountPoint, nil, 0o600); err != nil {
					t.Fatal(err)
				}
				return c
			}, fault.Unavailable},
		} {
			t.Run(sup.name+"/"+tc.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				cfg := tc.cfg()
				started, err := sup.s.Start(ctx, cfg, filepath.Join(filepath.Dir(cfg.MountPoint), "mounter.log"))
				if err == nil {
					_, _ = mounter.Stop(ctx, started, cfg.MountPoint, time.Second)
					t.Fatal("the server started")
				}
				t.Logf("%v", err)
				if !errors.Is(err, tc.want) || fault.Kind(err) != fault.Kind(tc.want) {
					t.Fatalf("error %q is of kind %q, want %q", err, fault.Kind(err), fault.Kind(tc.want))
				}
				for _, form := range testenv.SecretForms(secret) {
					if strings.Contains(err.Error(), form) {
						t.Fatalf("error shows the secret: %v", err)
					}
				}
			})
		}
	}
	t.Run("mounter host refuses a path outside its directories", func(t *testing.T) {
		cfg := config("outside", "local")
		cfg.MountPoint = filepath.Join(t.TempDir(), "mnt")
		_, err := (&mounter.Supervisor{Host: sock}).Start(t.Context(), cfg, filepath.Join(dir, "outside", "mounter.log"))
		if !errors.Is(err, fault.Invalid) {
			t.Fatalf("got %v, want invalid", err)
		}
	})
}
