package test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bucket-csi/bucket-csi/internal/localenv"
	"github.com/bucket-csi/bucket-csi/pkg/nodestate"
	"github.com/bucket-csi/bucket-csi/pkg/store/gcsstore"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// TestCachedFinalFailureHoldsOnlyPendingWork: a MOUNT_CACHED stage that
// fails with a code kubelet takes as final (here FailedPrecondition: on
// GCS the volume's prefix is also an object's name) and whose cache holds
// no file leaves nothing behind, since kubelet never unstages it: no
// record, no reservation of disk, read-ahead memory or FUSE server, no
// cache image. Before, each such volume held its cache's share of the
// node's disk (min(10 GiB, a quarter of the budget) by default), a FUSE
// server place and read-ahead memory for ever, so a tenant who can write
// an object into its own bucket could fill a node's budget with PVCs
// failing at their first stage. A failed stage whose cache holds a
// pending upload keeps it all, and the upload reaches the bucket once a
// stage succeeds.
func TestCachedFinalFailureHoldsOnlyPendingWork(t *testing.T) {
	testenv.RequireFUSE(t)
	s3 := testenv.StartS3(t)
	srv := testenv.StartGCS(t)
	drv := testenv.StartDriver(t, s3, "--gcs-endpoint", srv.Endpoint, "--gcs-project", localenv.GCSProject, "--write-back", "1h")
	c := drv.Dial(t)
	ctx := context.Background()
	gcs, err := gcsstore.Open(gcsstore.Config{Endpoint: srv.Endpoint, ProjectID: localenv.GCSProject}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := gcs.CreateBucket(ctx, "shared"); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"team-a", "team-a/seed.txt", "team-b/seed.txt"} {
		if err := gcs.PutObject(ctx, "shared", k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	stageReq := func(id, staging string) *csi.NodeStageVolumeRequest {
		if err := os.MkdirAll(staging, 0o750); err != nil {
			t.Fatal(err)
		}
		return &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: testenv.MountCap(rwx)}
	}
	volumeOf := func(prefix string) string {
		vol, err := c.Controller.CreateVolume(ctx, createReq("pv-"+prefix, map[string]string{"source": "gs://shared/" + prefix, "mode": "MOUNT_CACHED", "store": "gcs"}, nil))
		if err != nil {
			t.Fatal(err)
		}
		return vol.GetVolume().GetVolumeId()
	}
	recordOf := func(id string) *nodestate.Volume {
		for _, rec := range drv.Staged(t) {
			if rec.VolumeID == id {
				return rec
			}
		}
		return nil
	}
	ledgers := []string{"disk-budget.json", "memory-budget.json", "server-budget.json"}
	image := func(id string) string { return filepath.Join(drv.StateDir, "cache", volume.DirName(id)+".img") }

	t.Run("nothing cached", func(t *testing.T) {
		id := volumeOf("team-a")
		staging, _ := podPaths(t, drv)
		_, err := c.Node.NodeStageVolume(ctx, stageReq(id, staging))
		if status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("the stage of a prefix that is also an object = %v, want FailedPrecondition", err)
		}
		_, statErr := os.Stat(image(id))
		if rec := recordOf(id); rec != nil || !os.IsNotExist(statErr) {
			t.Fatalf("left: a record %+v, the cache image %v; want neither", rec, statErr)
		}
		for _, ledger := range ledgers {
			if r, reserved := reservationIn(t, drv, ledger, id); reserved {
				t.Fatalf("left: a reservation in %s: %+v", ledger, r)
			}
		}
	})

	t.Run("an upload pending", func(t *testing.T) {
		id := volumeOf("team-b")
		staging, _ := podPaths(t, drv)
		if _, err := c.Node.NodeStageVolume(ctx, stageReq(id, staging)); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(staging, "out.txt"), []byte("pending"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := gcs.GetObject(ctx, "shared", "team-b/out.txt"); err == nil {
			t.Fatal("out.txt is in the bucket already: --write-back 1h should keep it pending")
		}
		if err := gcs.PutObject(ctx, "shared", "team-b", []byte("x")); err != nil {
			t.Fatal(err)
		}
		server := recordOf(id).Server
		if err := syscall.Kill(server.Pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		testenv.MustBeGone(t, server)
		staging, _ = podPaths(t, drv)
		_, err := c.Node.NodeStageVolume(ctx, stageReq(id, staging))
		if status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("the restage with the prefix also an object = %v, want FailedPrecondition", err)
		}
		if recordOf(id) == nil || diskimageMissing(image(id)) {
			t.Fatalf("the failed stage of a cache with a pending upload: record %+v, image missing %v; want both kept", recordOf(id), diskimageMissing(image(id)))
		}
		for _, ledger := range ledgers {
			if _, reserved := reservationIn(t, drv, ledger, id); !reserved {
				t.Fatalf("the failed stage of a cache with a pending upload lost its reservation in %s", ledger)
			}
		}
		if err := gcs.DeleteObjects(ctx, "shared", []string{"team-b"}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Node.NodeStageVolume(ctx, stageReq(id, staging)); err != nil {
			t.Fatalf("the restage once the object is gone: %v", err)
		}
		unstageUntilDone(t, c, id, staging, 30*time.Second, 2*time.Minute)
		if got, err := gcs.GetObject(ctx, "shared", "team-b/out.txt"); err != nil || string(got) != "pending" {
			t.Fatalf("the pending upload after the failed stage: %q, %v", got, err)
		}
	})
}

// diskimageMissing reports whether no file is at img.
func diskimageMissing(img string) bool {
	_, err := os.Stat(img)
	return os.IsNotExist(err)
}
