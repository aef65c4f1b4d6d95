package test

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// TestCopyStagesWithoutBadKeys: a bucket holding keys that cannot be files (a ".."
// segment, an empty segment, a name too long for the node, a key that is
// also a prefix) and objects
// whose GET fails (refused, gone since the listing) stages: NodeStage
// answers Unavailable with progress while the copy runs, then OK, the
// copy holds every other file, and the driver logs the count with
// examples.
func TestCopyStagesWithoutBadKeys(t *testing.T) {
	testenv.RequireFUSE(t)
	s3 := testenv.StartS3(t)
	release := make(chan struct{})
	proxy := startFaultProxy(t, s3.Endpoint, map[string]int{"/bad-keys/denied.bin": 403, "/bad-keys/gone.bin": 404},
		map[string]chan struct{}{"/bad-keys/slow.bin": release})
	drv, c := proxy.startDriver(t, s3, "bad-keys")
	ctx := context.Background()
	good := map[string]string{"ok/a.txt": "a", "ok/b.txt": "b", "top.txt": "top", "slow.bin": "slow", "dup/child": "c"}
	// Keys the server's filesystem cannot hold are added to its listing
	// by the proxy, as a store that keeps any key lists them.
	proxy.listed = map[string][]string{"bad-keys": {"dots/../escape.txt", "empty//segment.txt", "long/" + strings.Repeat("n", 300), "dup"}}
	bad := append([]string{"denied.bin", "gone.bin"}, proxy.listed["bad-keys"]...)
	for k, v := range good {
		putRaw(t, s3.Client(), "bad-keys", k, v)
	}
	putRaw(t, s3.Client(), "bad-keys", "denied.bin", "refused")
	putRaw(t, s3.Client(), "bad-keys", "gone.bin", "deleted between the listing and the download")
	vol, err := c.Controller.CreateVolume(ctx, createReq("pv-bad-keys", map[string]string{"source": "s3://bad-keys", "mode": "COPY"}, s3.Secrets()))
	if err != nil {
		t.Fatal(err)
	}
	id := vol.GetVolume().GetVolumeId()
	staging, target := podPaths(t, drv)
	if err := os.MkdirAll(staging, 0o750); err != nil {
		t.Fatal(err)
	}
	stage := func(timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_, err := c.Node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: testenv.MountCap(rwx), Secrets: s3.Secrets()})
		return err
	}
	// While slow.bin is held the copy runs: Unavailable with progress.
	var codesSeen []codes.Code
	err = stage(7 * time.Second)
	codesSeen = append(codesSeen, status.Code(err))
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "so far") {
		t.Fatalf("NodeStage while the copy runs = %v, want Unavailable with progress", err)
	}
	close(release)
	err = stage(2 * time.Minute)
	codesSeen = append(codesSeen, status.Code(err))
	if err != nil {
		t.Fatalf("NodeStage after the copy = %v, want OK (answers: %v)", err, codesSeen)
	}
	if fmt.Sprint(codesSeen) != fmt.Sprint([]codes.Code{codes.Unavailable, codes.OK}) {
		t.Fatalf("NodeStage answered %v, want [Unavailable OK]", codesSeen)
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: target, VolumeCapability: testenv.MountCap(rwx)}); err != nil {
		t.Fatal(err)
	}
	var files []string
	_ = filepath.WalkDir(target, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p[len(target)+1:])
		}
		return nil
	})
	slices.Sort(files)
	want := slices.Sorted(maps.Keys(good))
	if !slices.Equal(files, want) {
		t.Fatalf("the pod sees %v, want exactly %v", files, want)
	}
	for k, v := range good {
		if got, _ := os.ReadFile(filepath.Join(target, k)); string(got) != v {
			t.Fatalf("%s holds %q, want %q", k, got, v)
		}
	}
	// The driver's log reaches the test through a pipe: wait for the line.
	logged := func(log string) bool {
		return strings.Contains(log, "COPY left out objects") && strings.Contains(log, "count="+fmt.Sprint(len(bad))) && strings.Contains(log, "empty//segment.txt")
	}
	for deadline := time.Now().Add(10 * time.Second); !logged(drv.Log.String()) && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if log := drv.Log.String(); !logged(log) {
		var lines []string
		for _, l := range strings.Split(log, "\n") {
			if strings.Contains(l, "left out") || strings.Contains(l, "copy complete") {
				lines = append(lines, l)
			}
		}
		t.Fatalf("the driver did not log the %d keys left out with examples; it logged:\n%s", len(bad), strings.Join(lines, "\n"))
	}
	unpublish(t, c, id, staging, target)
	if _, err := c.Node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
		t.Fatal(err)
	}
}

// TestMountHidesBadKeys: in MOUNT and MOUNT_CACHED volumes, keys no directory can show
// (an empty segment, "." and ".." segments, a name over 255 bytes, a file
// that is also a prefix) are hidden: every directory lists without error
// and shows exactly its good entries.
func TestMountHidesBadKeys(t *testing.T) {
	testenv.RequireFUSE(t)
	s3 := testenv.StartS3(t)
	proxy := startFaultProxy(t, s3.Endpoint, nil, nil)
	proxy.listed = map[string][]string{"odd-keys": {
		"e//x", "d/../x", "./x", "dot/./x", "long/" + strings.Repeat("n", 300), "dup",
	}}
	drv, c := proxy.startDriver(t, s3, "odd-keys")
	ctx := context.Background()
	for _, k := range []string{"top.txt", "e/ok", "d/ok", "dot/ok", "long/ok", "dup/child"} {
		putRaw(t, s3.Client(), "odd-keys", k, "ok")
	}
	for _, mode := range []string{"MOUNT", "MOUNT_CACHED"} {
		t.Run(mode, func(t *testing.T) {
			before := proxy.injected.Load()
			vol, err := c.Controller.CreateVolume(ctx, createReq("pv-odd-keys-"+strings.ToLower(mode), map[string]string{"source": "s3://odd-keys", "mode": mode}, s3.Secrets()))
			if err != nil {
				t.Fatal(err)
			}
			id := vol.GetVolume().GetVolumeId()
			staging, target := podPaths(t, drv)
			publish(t, c, id, staging, target, s3.Secrets(), true)
			for dir, want := range map[string][]string{
				"": {"d", "dot", "dup", "e", "long", "top.txt"}, "e": {"ok"}, "d": {"ok"}, "dot": {"ok"}, "long": {"ok"}, "dup": {"child"},
			} {
				names, err := readdirAll(filepath.Join(target, dir))
				if err != nil {
					t.Errorf("listing %q of the mount: %v", dir, err)
					continue
				}
				if !slices.Equal(names, want) {
					t.Errorf("%q lists %q, want %q", dir, names, want)
				}
			}
			if proxy.injected.Load() == before {
				t.Fatal("no listing went through the proxy with the odd keys")
			}
			if got, err := os.ReadFile(filepath.Join(target, "dup", "child")); err != nil || string(got) != "ok" {
				t.Errorf("dup/child reads %q %v, want the directory's file", got, err)
			}
			unpublish(t, c, id, staging, target)
			if _, err := c.Node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestCopyFinalErrors: a COPY whose bucket is gone answers NotFound and
// one whose credentials are refused answers PermissionDenied, on every
// retry: final codes, never Unavailable forever.
func TestCopyFinalErrors(t *testing.T) {
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t)
	ctx := context.Background()
	st := s3.Store(t)
	if err := st.CreateBucket(ctx, "soon-gone"); err != nil {
		t.Fatal(err)
	}
	vol, err := c.Controller.CreateVolume(ctx, createReq("pv-gone", map[string]string{"source": "s3://soon-gone", "mode": "COPY"}, s3.Secrets()))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteBucket(ctx, "soon-gone"); err != nil {
		t.Fatal(err)
	}
	wrong := s3.Secrets()
	for k := range wrong {
		if strings.Contains(strings.ToLower(k), "secret") {
			wrong[k] = "not-the-secret"
		}
	}
	for _, tc := range []struct {
		name    string
		secrets map[string]string
		want    codes.Code
	}{
		{"bucket gone", s3.Secrets(), codes.NotFound},
		{"credentials refused", wrong, codes.PermissionDenied},
	} {
		staging := filepath.Join(drv.TempDir(t), "staging")
		for try := 0; try < 2; try++ {
			err := stageCopy(t, c, vol.GetVolume().GetVolumeId(), staging, tc.secrets)
			if status.Code(err) != tc.want {
				t.Fatalf("%s, try %d: NodeStage = %v, want %v", tc.name, try, err, tc.want)
			}
		}
	}
}
