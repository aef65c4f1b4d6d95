package test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/bucket-csi/bucket-csi/pkg/volume"
	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// pvVolume is a volume provisioned as the external-provisioner does with
// --extra-create-metadata: the PV name in the parameters, which the
// controller returns in the volume context kubelet passes to the node.
type pvVolume struct {
	id  string
	ctx map[string]string
}

// createPV provisions a volume for PV pv with params.
func createPV(t *testing.T, c testenv.Clients, s3 *testenv.S3, pv string, params map[string]string) pvVolume {
	t.Helper()
	p := map[string]string{volume.KeyPVName: pv}
	for k, v := range params {
		p[k] = v
	}
	vol, err := c.Controller.CreateVolume(context.Background(), createReq(pv, p, s3.Secrets()))
	if err != nil {
		t.Fatal(err)
	}
	if got := vol.GetVolume().GetVolumeContext()[volume.KeyPVName]; got != pv {
		t.Fatalf("volume context PV name = %q, want %q", got, pv)
	}
	return pvVolume{id: vol.GetVolume().GetVolumeId(), ctx: vol.GetVolume().GetVolumeContext()}
}

// podContext is the volume context kubelet adds with podInfoOnMount.
func podContext(name, uid string, base map[string]string) map[string]string {
	out := map[string]string{volume.KeyPodName: name, volume.KeyPodNamespace: "team-a", volume.KeyPodUID: uid, "csi.storage.k8s.io/serviceAccount.name": "default"}
	for k, v := range base {
		out[k] = v
	}
	return out
}

// publishPod publishes v, staged at staging, at a new target path for
// pod (namespace team-a, UID "uid-"+pod; "" publishes without pod
// information) and returns the target.
func publishPod(t *testing.T, c testenv.Clients, drv *testenv.Driver, v pvVolume, staging, pod string) string {
	t.Helper()
	_, target := podPaths(t, drv)
	if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
		t.Fatal(err)
	}
	vctx := v.ctx
	if pod != "" {
		vctx = podContext(pod, "uid-"+pod, v.ctx)
	}
	if _, err := c.Node.NodePublishVolume(context.Background(), &csi.NodePublishVolumeRequest{VolumeId: v.id, StagingTargetPath: staging, TargetPath: target, VolumeCapability: testenv.MountCap(rwx), VolumeContext: vctx}); err != nil {
		t.Fatalf("NodePublishVolume: %v", err)
	}
	return target
}

// stagePV stages v at a new staging path with the store's secrets
// (retrying while it answers Unavailable) and returns the path.
func stagePV(t *testing.T, c testenv.Clients, drv *testenv.Driver, s3 *testenv.S3, v pvVolume) string {
	t.Helper()
	staging, _ := podPaths(t, drv)
	stageWithContext(t, c, v.id, staging, v.ctx, s3.Secrets())
	return staging
}

// publishedPV provisions a volume for PV pv with params, stages it and
// publishes it for pod (see publishPod).
func publishedPV(t *testing.T, c testenv.Clients, drv *testenv.Driver, s3 *testenv.S3, pv string, params map[string]string, pod string) (v pvVolume, staging, target string) {
	t.Helper()
	v = createPV(t, c, s3, pv, params)
	staging = stagePV(t, c, drv, s3, v)
	return v, staging, publishPod(t, c, drv, v, staging, pod)
}
