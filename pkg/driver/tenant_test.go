package driver

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	corev1 "k8s.io/api/core/v1"

	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// TestStageTenant: the namespace a stage's places are shared by
// (stage.Request.Tenant) is a dynamic volume's claim namespace, which
// CreateVolume puts in the volume context; a static PV's claimRef
// namespace, found by the volume's handle; an inline volume's pod
// namespace (kubelet's), never a pvc/namespace among the pod author's
// attributes; and "" where none is known.
func TestStageTenant(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.bucket("data")

	created, err := e.d.CreateVolume(ctx, createReq("pvc-1", map[string]string{
		volume.KeyMode: string(volume.ModeMount), volume.KeySource: "s3://data",
		volume.KeyPVName: "pv-1", volume.KeyPVCName: "claim", volume.KeyPVCNamespace: "team-a"}))
	wantCode(t, "CreateVolume", err, codes.OK)
	vctx := created.GetVolume().GetVolumeContext()
	if vctx[volume.KeyPVCNamespace] != "team-a" {
		t.Fatalf("CreateVolume's volume context %v lacks the claim's namespace", vctx)
	}
	req := stageReq(created.GetVolume().GetVolumeId(), e.path("staging-dynamic"), rwx())
	req.VolumeContext = vctx
	_, err = e.d.NodeStageVolume(ctx, req)
	wantCode(t, "NodeStageVolume of the dynamic volume", err, codes.OK)

	static := e.sourceID("data", volume.ModeMount)
	pvStage := func(pvs []corev1.PersistentVolume, attrs map[string]string, want string) {
		t.Helper()
		e := newEnv(t, func(c *Config) {
			c.PVs = func(context.Context) ([]corev1.PersistentVolume, error) { return pvs, nil }
		})
		e.bucket("data")
		req := stageReq(static, e.path("staging"), rwx())
		req.VolumeContext = attrs
		_, err := e.d.NodeStageVolume(ctx, req)
		wantCode(t, "NodeStageVolume", err, codes.OK)
		if got := e.stagers[volume.ModeMount].tenants; len(got) != 1 || got[0] != want {
			t.Fatalf("PVs %+v, context %v: stages for tenants %q, want [%q]", pvs, attrs, got, want)
		}
	}
	pv := func(name, namespace string) corev1.PersistentVolume {
		p := corev1.PersistentVolume{}
		p.Name = name
		p.Spec.CSI = &corev1.CSIPersistentVolumeSource{Driver: Name, VolumeHandle: static}
		if namespace != "" {
			p.Spec.ClaimRef = &corev1.ObjectReference{Namespace: namespace, Name: "claim"}
		}
		return p
	}
	pvStage([]corev1.PersistentVolume{pv("static", "team-b")}, nil, "team-b")
	pvStage([]corev1.PersistentVolume{pv("static", "")}, nil, "")
	// Two PVs of one handle: the one the context names (a dynamic volume
	// created before the context carried the namespace).
	pvStage([]corev1.PersistentVolume{pv("other", "team-x"), pv("named", "team-d")}, map[string]string{volume.KeyPVName: "named"}, "team-d")

	inline := publishReq("csi-inline-tenant", "", e.path("target"), rwx())
	inline.VolumeContext = map[string]string{volume.KeySource: "s3://data", volume.KeyEphemeral: "true",
		volume.KeyPVCNamespace: "team-forged", volume.KeyPodNamespace: "team-c", volume.KeyPodName: "p", volume.KeyPodUID: "u1"}
	inline.Secrets = map[string]string{secretKey: ambientKey}
	_, err = e.d.NodePublishVolume(ctx, inline)
	wantCode(t, "NodePublishVolume of an inline volume", err, codes.OK)

	if got, want := e.stagers[volume.ModeMount].tenants, []string{"team-a", "team-c"}; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("stages for tenants %q, want %q", got, want)
	}
}
