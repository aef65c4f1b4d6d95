package test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// TestStageChecksAccess: in the FUSE modes, a stage whose bucket does not
// exist answers NotFound and one whose credentials the store refuses
// answers PermissionDenied, each naming the bucket and without the secret,
// and nothing is left mounted; kubelet shows that reason in the pod's
// events instead of a pod that starts on a directory whose every access
// fails. A prefix-scoped volume is checked by listing under its prefix.
func TestStageChecksAccess(t *testing.T) {
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t)
	ctx := context.Background()
	if err := s3.Store(t).CreateBucket(ctx, "access-ok"); err != nil {
		t.Fatal(err)
	}
	const wrongKey = "wrong-secret-for-the-access-test"
	wrong := map[string]string{"accessKeyID": s3.AccessKey, "secretAccessKey": wrongKey}
	vc := testenv.MountCap(rwx)
	for _, mode := range []string{"M", "K"} { // MOUNT, MOUNT_CACHED
		t.Run(mode, func(t *testing.T) {
			staging, _ := podPaths(t, drv)
			err := stageVol(t, c, "v1:s3:"+mode+"ps:-:no-such-bucket-here/p", staging, vc, nil, s3.Secrets())
			wantStatus(t, "stage of a missing bucket", err, codes.NotFound, "no-such-bucket-here")
			err = stageVol(t, c, "v1:s3:"+mode+"ps:-:access-ok", staging, vc, nil, wrong)
			wantStatus(t, "stage with refused credentials", err, codes.PermissionDenied, "access-ok")
			if strings.Contains(err.Error(), wrongKey) {
				t.Fatalf("the error holds the secret: %v", err)
			}
			if m := mountsBelow(t, filepath.Dir(staging)); len(m) != 0 {
				t.Fatalf("a refused stage left mounts: %v", m)
			}
			if err := stageVol(t, c, "v1:s3:"+mode+"ps:-:access-ok/empty-prefix", staging, vc, nil, s3.Secrets()); err != nil {
				t.Fatalf("stage of an empty prefix of a reachable bucket: %v", err)
			}
			if _, err := c.Node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: "v1:s3:" + mode + "ps:-:access-ok/empty-prefix", StagingTargetPath: staging}); err != nil {
				t.Fatal(err)
			}
		})
	}
}
