package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// mounterSettings are the tuned fields of a staged volume's saved
// FUSE server config (mounter.json).
type mounterSettings struct {
	DirCacheTime     time.Duration `json:"dirCacheTime"`
	Transfers        int           `json:"transfers"`
	WriteBack        time.Duration `json:"writeBack"`
	ReadChunkStreams int           `json:"readChunkStreams"`
	ReadChunkSize    int64         `json:"readChunkSize"`
	ServerWrites     bool          `json:"serverWrites"`
}

func stagedSettings(t *testing.T, drv *testenv.Driver, id string) mounterSettings {
	t.Helper()
	var s mounterSettings
	savedMounterConfig(t, drv, id, &s)
	return s
}

// savedMounterConfig decodes the saved FUSE server config (mounter.json)
// of the staged volume id into v.
func savedMounterConfig(t *testing.T, drv *testenv.Driver, id string, v any) {
	t.Helper()
	for _, r := range drv.Staged(t) {
		if r.VolumeID != id {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(r.StateDir, "mounter.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, v); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("volume %s is not staged", id)
}

// TestProfileSettings: a `profile` StorageClass parameter reaches the node
// in the volume context and sets the FUSE server's tuning; without one,
// and for what the profile leaves alone, the node's flags apply; an
// explicit dir-cache-time mount option wins over the profile.
func TestProfileSettings(t *testing.T) {
	testenv.RequireFUSE(t)
	// Node flags the profiles leave alone stay in force under them.
	s3, drv, c := startAll(t, "--read-chunk-streams", "2", "--read-chunk-size", fmt.Sprint(4<<20))
	ctx := context.Background()
	tests := []struct {
		name, mode, profile string
		flags               []string
		want                mounterSettings
	}{
		{"no profile", "MOUNT_CACHED", "", nil, mounterSettings{DirCacheTime: 10 * time.Second, Transfers: 1, WriteBack: time.Second, ReadChunkStreams: 2, ReadChunkSize: 4 << 20}},
		{"small-files", "MOUNT_CACHED", "small-files", nil, mounterSettings{DirCacheTime: time.Minute, Transfers: 8, WriteBack: time.Second, ReadChunkStreams: 2, ReadChunkSize: 4 << 20, ServerWrites: true}},
		{"checkpoint", "MOUNT_CACHED", "checkpoint", nil, mounterSettings{DirCacheTime: 10 * time.Second, Transfers: 1, WriteBack: 100 * time.Millisecond, ReadChunkStreams: 2, ReadChunkSize: 4 << 20}},
		{"dataset", "MOUNT", "dataset", nil, mounterSettings{DirCacheTime: 5 * time.Minute, ReadChunkStreams: 2, ReadChunkSize: 4 << 20}},
		{"dataset, explicit dir-cache-time", "MOUNT", "dataset", []string{"dir-cache-time=3s"}, mounterSettings{DirCacheTime: 3 * time.Second, ReadChunkStreams: 2, ReadChunkSize: 4 << 20}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			params := map[string]string{"mode": tt.mode}
			if tt.profile != "" {
				params["profile"] = tt.profile
			}
			v, err := c.Controller.CreateVolume(ctx, createReq("pvc-profile-"+string(rune('a'+i)), params, s3.Secrets()))
			if err != nil {
				t.Fatal(err)
			}
			id, vctx := v.GetVolume().GetVolumeId(), v.GetVolume().GetVolumeContext()
			if vctx["profile"] != tt.profile {
				t.Fatalf("volume context profile %q, want %q", vctx["profile"], tt.profile)
			}
			staging, _ := podPaths(t, drv)
			if err := os.MkdirAll(staging, 0o750); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging,
				VolumeCapability: testenv.MountCap(rwx, tt.flags...), VolumeContext: vctx, Secrets: s3.Secrets()}); err != nil {
				t.Fatalf("NodeStageVolume: %v", err)
			}
			defer unstage(t, c, id, staging)
			if got := stagedSettings(t, drv, id); got != tt.want {
				t.Errorf("FUSE server settings %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestProfileUnknown: an unknown profile answers InvalidArgument naming
// the accepted ones, in CreateVolume, in NodeStage of a provisioned
// volume and in an inline volume's NodePublish.
func TestProfileUnknown(t *testing.T) {
	s3, drv, c := startAll(t, "--inline-stores", "s3")
	ctx := context.Background()
	if err := s3.Store(t).CreateBucket(ctx, "profiled"); err != nil {
		t.Fatal(err)
	}
	const accepted = "accepted: dataset, checkpoint, small-files"
	check := func(what string, err error) {
		t.Helper()
		st, _ := status.FromError(err)
		if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), accepted) {
			t.Errorf("%s: got %v %q, want InvalidArgument naming %q", what, st.Code(), st.Message(), accepted)
		}
	}
	_, err := c.Controller.CreateVolume(ctx, createReq("pvc-bad-profile", map[string]string{"source": "s3://profiled", "profile": "fast"}, s3.Secrets()))
	check("CreateVolume", err)

	v, err := c.Controller.CreateVolume(ctx, createReq("pvc-profile-ok", map[string]string{"source": "s3://profiled"}, s3.Secrets()))
	if err != nil {
		t.Fatal(err)
	}
	staging, target := podPaths(t, drv)
	if err := os.MkdirAll(staging, 0o750); err != nil {
		t.Fatal(err)
	}
	_, err = c.Node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: v.GetVolume().GetVolumeId(), StagingTargetPath: staging,
		VolumeCapability: testenv.MountCap(rwx), VolumeContext: map[string]string{"profile": "fast"}, Secrets: s3.Secrets()})
	check("NodeStageVolume", err)

	_, err = c.Node.NodePublishVolume(ctx, inlineReq(target, map[string]string{"source": "s3://profiled", "profile": "fast"}, s3.Secrets()))
	check("inline NodePublishVolume", err)
}
