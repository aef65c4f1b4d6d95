package test

import (
	"context"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bucket-csi/bucket-csi/pkg/store"
	"github.com/bucket-csi/bucket-csi/test/testenv"
)

func createReq(name string, params, secrets map[string]string) *csi.CreateVolumeRequest {
	return &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: []*csi.VolumeCapability{testenv.MountCap(rwx)}, Parameters: params, Secrets: secrets}
}

func keys(t *testing.T, st store.Store, bucket string) []string {
	t.Helper()
	var out []string
	if err := st.List(context.Background(), bucket, "", 0, func(o store.Object) error { out = append(out, o.Key); return nil }); err != nil {
		t.Fatalf("listing %s: %v", bucket, err)
	}
	return out
}

// TestForeignBucketNeverDeleted: buckets the driver did not create survive
// DeleteVolume of every kind of volume that uses them, even with
// persistent "false", and the driver writes nothing into them.
func TestForeignBucketNeverDeleted(t *testing.T) {
	s3, _, c := startAll(t, "--services", "controller")
	ctx := context.Background()
	indep := s3.Store(t)
	if err := indep.CreateBucket(ctx, "theirs"); err != nil {
		t.Fatal(err)
	}
	if err := indep.PutObject(ctx, "theirs", "precious.txt", []byte("keep me")); err != nil {
		t.Fatal(err)
	}
	for _, params := range []map[string]string{
		{"name": "theirs", "persistent": "false"},
		{"name": "theirs"},
		{"source": "s3://theirs"},
		{"source": "s3://theirs/sub"},
	} {
		vol, err := c.Controller.CreateVolume(ctx, createReq("pvc-"+params["name"]+strings.ReplaceAll(params["source"], "/", "-"), params, s3.Secrets()))
		if err != nil {
			t.Fatalf("CreateVolume(%v): %v", params, err)
		}
		for i := 0; i < 2; i++ { // DeleteVolume is idempotent
			if _, err := c.Controller.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: vol.GetVolume().GetVolumeId(), Secrets: s3.Secrets()}); err != nil {
				t.Fatalf("DeleteVolume(%v): %v", params, err)
			}
		}
		if got := keys(t, indep, "theirs"); len(got) != 1 || got[0] != "precious.txt" {
			t.Fatalf("after DeleteVolume(%v) the bucket holds %v, want only precious.txt", params, got)
		}
	}
}

// TestManagedBucketLifecycle: a bucket the driver creates is marked,
// shared by volumes naming it, reused across calls, and deleted with its
// objects only when persistent is "false" and its last volume is deleted.
func TestManagedBucketLifecycle(t *testing.T) {
	s3, _, c := startAll(t, "--services", "controller")
	ctx := context.Background()
	indep := s3.Store(t)
	params := map[string]string{"name": "scratch-out", "persistent": "false"}
	a, err := c.Controller.CreateVolume(ctx, createReq("pvc-a", params, s3.Secrets()))
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Controller.CreateVolume(ctx, createReq("pvc-a", params, s3.Secrets()))
	if err != nil || again.GetVolume().GetVolumeId() != a.GetVolume().GetVolumeId() {
		t.Fatalf("repeat CreateVolume: %v, id %q vs %q", err, again.GetVolume().GetVolumeId(), a.GetVolume().GetVolumeId())
	}
	b, err := c.Controller.CreateVolume(ctx, createReq("pvc-b", params, s3.Secrets()))
	if err != nil {
		t.Fatal(err)
	}
	if err := indep.PutObject(ctx, "scratch-out", "result.txt", []byte("out")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Controller.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: a.GetVolume().GetVolumeId(), Secrets: s3.Secrets()}); err != nil {
		t.Fatal(err)
	}
	if err := indep.HeadBucket(ctx, "scratch-out"); err != nil {
		t.Fatalf("bucket deleted while volume pvc-b still uses it: %v", err)
	}
	for i := 0; i < 2; i++ {
		if _, err := c.Controller.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: b.GetVolume().GetVolumeId(), Secrets: s3.Secrets()}); err != nil {
			t.Fatal(err)
		}
	}
	if err := indep.HeadBucket(ctx, "scratch-out"); err == nil {
		t.Fatal("non-persistent bucket still exists after its last volume was deleted")
	}
	// Persistent (the default): the bucket and data outlive the volume.
	p, err := c.Controller.CreateVolume(ctx, createReq("pvc-p", map[string]string{"name": "keep-out"}, s3.Secrets()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Controller.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: p.GetVolume().GetVolumeId(), Secrets: s3.Secrets()}); err != nil {
		t.Fatal(err)
	}
	if err := indep.HeadBucket(ctx, "keep-out"); err != nil {
		t.Fatalf("persistent bucket deleted: %v", err)
	}
}

// TestControllerErrors: each bad request answers the code the CSI spec
// and the external-provisioner expect, with a message naming the problem.
func TestControllerErrors(t *testing.T) {
	s3, _, c := startAll(t, "--services", "controller", "--stores", "s3")
	ctx := context.Background()
	if _, err := c.Controller.CreateVolume(ctx, createReq("pvc-x", map[string]string{"name": "cap-test"}, s3.Secrets())); err != nil {
		t.Fatal(err)
	}
	wrong := map[string]string{"accessKeyID": s3.AccessKey, "secretAccessKey": "not-the-secret-key"}
	tests := []struct {
		name    string
		req     *csi.CreateVolumeRequest
		code    codes.Code
		message string
	}{
		{"unknown key", createReq("v1", map[string]string{"bukket": "x"}, s3.Secrets()), codes.InvalidArgument, "bukket"},
		{"bad mode", createReq("v1", map[string]string{"mode": "FAST"}, s3.Secrets()), codes.InvalidArgument, "MOUNT, COPY, MOUNT_CACHED"},
		{"bad bucket name", createReq("v1", map[string]string{"name": "Bad_Name"}, s3.Secrets()), codes.InvalidArgument, "lowercase"},
		{"unconfigured store", createReq("v1", map[string]string{"source": "gs://abc"}, s3.Secrets()), codes.InvalidArgument, "not configured"},
		{"missing source bucket", createReq("v1", map[string]string{"source": "s3://no-such-bucket"}, s3.Secrets()), codes.NotFound, "no-such-bucket"},
		{"wrong credentials", createReq("v1", map[string]string{"name": "denied-bucket"}, wrong), codes.PermissionDenied, "not allowed"},
		{"half a key pair", createReq("v1", map[string]string{"name": "abc"}, map[string]string{"accessKeyID": "x"}), codes.InvalidArgument, "secretAccessKey"},
		{"same name, other mode", createReq("pvc-x", map[string]string{"name": "cap-test", "mode": "COPY"}, s3.Secrets()), codes.AlreadyExists, "other parameters"},
		{"block access", &csi.CreateVolumeRequest{Name: "v2", VolumeCapabilities: []*csi.VolumeCapability{{AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}, AccessMode: &csi.VolumeCapability_AccessMode{Mode: rwx}}}}, codes.InvalidArgument, "block"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Controller.CreateVolume(ctx, tt.req)
			st, _ := status.FromError(err)
			if st.Code() != tt.code || !strings.Contains(st.Message(), tt.message) {
				t.Fatalf("got %v %q, want %v containing %q", st.Code(), st.Message(), tt.code, tt.message)
			}
			for _, secret := range tt.req.GetSecrets() {
				if len(secret) > 2 && strings.Contains(st.Message(), secret) {
					t.Fatalf("error message leaks a secret: %q", st.Message())
				}
			}
		})
	}
}
