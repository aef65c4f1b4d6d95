package test

import (
	"context"
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

// TestKubernetesLifecycle replays the calls the external-provisioner (with
// --extra-create-metadata) and kubelet make, with their parameters, paths
// and secrets, against the real binary: a dynamic PVC used by two pods on
// one node, kubelet repeating calls after a restart, and a retry after a
// retryable answer. Static PVs and inline volumes: TestStaticPV and
// TestInlineVolumePolicy.
func TestKubernetesLifecycle(t *testing.T) {
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t, "--write-back", "10s")
	ctx := context.Background()
	kubelet := drv.TempDir(t)
	call := func(timeout time.Duration) (context.Context, context.CancelFunc) {
		return context.WithTimeout(ctx, timeout)
	}

	// external-provisioner: StorageClass parameters minus the
	// csi.storage.k8s.io secret keys, plus the extra metadata.
	pvName := "pvc-3f1c2a9e-6b0d-4e8a-9c51-7a2f0e4d9b11"
	pctx, cancel := call(10 * time.Second)
	vol, err := c.Controller.CreateVolume(pctx, &csi.CreateVolumeRequest{
		Name:          pvName,
		CapacityRange: &csi.CapacityRange{RequiredBytes: 5 << 30},
		VolumeCapabilities: []*csi.VolumeCapability{{
			AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "", MountFlags: []string{"uid=1000"}}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER},
		}},
		Parameters: map[string]string{"mode": "MOUNT_CACHED", "persistent": "false",
			"csi.storage.k8s.io/pvc/name": "checkpoints", "csi.storage.k8s.io/pvc/namespace": "ml", "csi.storage.k8s.io/pv/name": pvName},
		Secrets: s3.Secrets(),
	})
	cancel()
	if err != nil {
		t.Fatalf("CreateVolume: %v", err)
	}
	if vol.GetVolume().GetCapacityBytes() != 5<<30 {
		t.Fatalf("capacity %d, want the request", vol.GetVolume().GetCapacityBytes())
	}
	id := vol.GetVolume().GetVolumeId()
	bucketName := vol.GetVolume().GetVolumeContext()["bucket"]
	// The PV's volumeAttributes: the response's context plus the
	// provisioner identity.
	pvAttrs := map[string]string{"storage.kubernetes.io/csiProvisionerIdentity": "1732470000000-1234-bucket.csi.io"}
	for k, v := range vol.GetVolume().GetVolumeContext() {
		pvAttrs[k] = v
	}
	vcap := testenv.MountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER, "uid=1000")
	vcap.GetMount().VolumeMountGroup = "1000"

	// kubelet MountDevice: creates globalmount, then NodeStage with the
	// node-stage secret and the PV attributes only.
	staging := filepath.Join(kubelet, "plugins", "kubernetes.io", "csi", "bucket.csi.io", "1f3a", "globalmount")
	if err := os.MkdirAll(staging, 0o750); err != nil {
		t.Fatal(err)
	}
	stage := func() error {
		sctx, cancel := call(2 * time.Minute)
		defer cancel()
		_, err := c.Node.NodeStageVolume(sctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: vcap, VolumeContext: pvAttrs, Secrets: s3.Secrets()})
		return err
	}
	if err := stage(); err != nil {
		t.Fatalf("NodeStageVolume: %v", err)
	}
	// Two pods on this node: NodePublish each, with pod info and tokens.
	token := "eyJhbGciOiJSUzI1NiJ9.service-account-token-never-logged"
	publishPod := func(uid string) string {
		target := filepath.Join(kubelet, "pods", uid, "volumes", "kubernetes.io~csi", pvName, "mount")
		if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
			t.Fatal(err)
		}
		vc := map[string]string{"csi.storage.k8s.io/pod.name": "train-" + uid, "csi.storage.k8s.io/pod.namespace": "ml", "csi.storage.k8s.io/pod.uid": uid,
			"csi.storage.k8s.io/serviceAccount.name": "default", "csi.storage.k8s.io/ephemeral": "false",
			"csi.storage.k8s.io/serviceAccount.tokens": `{"sts.amazonaws.com":{"token":"` + token + `","expirationTimestamp":"2026-11-24T22:00:00Z"}}`}
		for k, v := range pvAttrs {
			vc[k] = v
		}
		pctx, cancel := call(2 * time.Minute)
		defer cancel()
		if _, err := c.Node.NodePublishVolume(pctx, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: target, VolumeCapability: vcap, VolumeContext: vc}); err != nil {
			t.Fatalf("NodePublishVolume for pod %s: %v", uid, err)
		}
		return target
	}
	podA, podB := publishPod("a1b2"), publishPod("c3d4")
	if err := os.WriteFile(filepath.Join(podA, "from-a.txt"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(podB, "from-a.txt")); err != nil || string(got) != "a" {
		t.Fatalf("pod B does not see pod A's file on the shared staging: %q %v", got, err)
	}
	// kubelet restart: MountDevice and SetUp run again on mounted paths.
	if err := stage(); err != nil {
		t.Fatalf("repeated NodeStage after a kubelet restart: %v", err)
	}
	publishPod("a1b2")
	if _, err := c.Node.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: podA}); err != nil {
		t.Fatalf("NodeGetVolumeStats: %v", err)
	}
	// Pods deleted: NodeUnpublish each, then NodeUnstage, which answers a
	// retryable code until the upload (write-back 10s) is done; kubelet
	// retries with its own deadline each time.
	for _, target := range []string{podA, podB} {
		if _, err := c.Node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
			t.Fatalf("NodeUnpublishVolume: %v", err)
		}
	}
	// The store stalls (paused) during the first attempt: a retryable
	// answer, the volume kept; kubelet retries after it comes back.
	if err := s3.Pause(true); err != nil {
		t.Fatal(err)
	}
	uctx, ucancel := call(8 * time.Second)
	_, err = c.Node.NodeUnstageVolume(uctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging})
	ucancel()
	if err := s3.Pause(false); err != nil {
		t.Fatal(err)
	}
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("NodeUnstage with the store stalled = %v, want Unavailable", err)
	}
	retries := 1
	for {
		uctx, cancel := call(30 * time.Second)
		_, err := c.Node.NodeUnstageVolume(uctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging})
		cancel()
		if err == nil {
			break
		}
		if status.Code(err) != codes.Unavailable || retries > 20 {
			t.Fatalf("NodeUnstageVolume: %v", err)
		}
		retries++
	}
	if got, err := s3.ReadObject(t, bucketName, "from-a.txt"); err != nil || string(got) != "a" {
		t.Fatalf("file not in the bucket after unstage: %q %v", got, err)
	}
	// PV released with reclaimPolicy Delete: DeleteVolume, twice.
	for i := 0; i < 2; i++ {
		dctx, cancel := call(10 * time.Second)
		_, err := c.Controller.DeleteVolume(dctx, &csi.DeleteVolumeRequest{VolumeId: id, Secrets: s3.Secrets()})
		cancel()
		if err != nil {
			t.Fatalf("DeleteVolume: %v", err)
		}
	}
	if err := s3.Store(t).HeadBucket(ctx, bucketName); err == nil {
		t.Fatal("persistent=false bucket survived DeleteVolume")
	}
	if strings.Contains(drv.Log.String(), token) {
		t.Fatal("a service account token reached the driver log")
	}
	t.Logf("unstage answered Unavailable %d times before the upload finished", retries)
}
