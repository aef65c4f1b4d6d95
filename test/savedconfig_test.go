package test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// TestOldSavedConfigRestarts: a FUSE server config saved by a driver
// before the server took explicit settings (only a "mode") still restarts
// a dead server with the settings of its mode: a publish after the server
// died repairs it from the saved config (no secrets at hand), and the
// restarted server caches with durable fsync (MOUNT_CACHED) or streams
// through read-ahead (MOUNT), as its log line says and the mount shows.
func TestOldSavedConfigRestarts(t *testing.T) {
	for _, tc := range []struct {
		mode string
		want []string // settings on the restarted server's "mounted" line
	}{
		{"MOUNT", []string{"readAhead=true", "cache=false", "durable=false"}},
		{"MOUNT_CACHED", []string{"cache=true", "durable=true", "readAhead=false"}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			testenv.RequireFUSE(t)
			s3, drv, c := startAll(t, "--write-back", "30s")
			ctx := context.Background()
			v, err := c.Controller.CreateVolume(ctx, createReq("pvc-old-config", map[string]string{"mode": tc.mode}, s3.Secrets()))
			if err != nil {
				t.Fatal(err)
			}
			id, bucket := v.GetVolume().GetVolumeId(), v.GetVolume().GetVolumeContext()["bucket"]
			staging, target := podPaths(t, drv)
			publish(t, c, id, staging, target, s3.Secrets(), false)
			rec := drv.Staged(t)[0]
			if err := syscall.Kill(rec.Server.Pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			testenv.MustBeGone(t, rec.Server)
			oldFormat(t, filepath.Join(rec.StateDir, "mounter.json"))
			if _, err := c.Node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
				t.Fatalf("unpublish of the dead mount: %v", err)
			}
			if _, err := c.Node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: target, VolumeCapability: testenv.MountCap(rwx)}); err != nil {
				t.Fatalf("publish after the server died: %v", err)
			}
			logs, err := os.ReadFile(filepath.Join(rec.StateDir, "mounter.log"))
			if err != nil {
				t.Fatal(err)
			}
			var mounted string
			for _, line := range strings.Split(string(logs), "\n") {
				if strings.Contains(line, "msg=mounted") {
					mounted = line
				}
			}
			for _, w := range tc.want {
				if !strings.Contains(mounted, w) {
					t.Errorf("restarted server's mounted line lacks %s: %s", w, mounted)
				}
			}
			// Through the restarted server: with durable fsync the bucket
			// holds the file at once (write-back is 30s); a streaming
			// mount uploads on close.
			f, err := os.Create(filepath.Join(target, "after.txt"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteString("restarted"); err != nil {
				t.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				t.Fatalf("fsync: %v", err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if got, err := s3.ReadObject(t, bucket, "after.txt"); err != nil || string(got) != "restarted" {
				t.Fatalf("bucket after the restart: %q %v", got, err)
			}
			unpublish(t, c, id, staging, target)
		})
	}
}

// oldFormat rewrites a saved server config as a driver before explicit
// settings wrote it: the same fields, without format and the settings.
func oldFormat(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if m["format"] == nil {
		t.Fatalf("the saved config has no format: %s", path)
	}
	for _, k := range []string{"format", "cache", "durable", "readAhead"} {
		delete(m, k)
	}
	if data, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
