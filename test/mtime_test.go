package test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// TestMountMTimes: by default a MOUNT volume shows an object's
// last-modified time as its mtime (no HEAD request per file on stat);
// with --mount-object-mtimes it shows the mtime an rclone-style uploader
// kept in the object's metadata.
func TestMountMTimes(t *testing.T) {
	testenv.RequireFUSE(t)
	srv := testenv.StartS3(t)
	ctx := context.Background()
	cl := srv.Client()
	if _, err := cl.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("mtimes")}); err != nil {
		t.Fatal(err)
	}
	kept := time.Unix(1_000_000_000, 0)
	if _, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("mtimes"), Key: aws.String("kept.txt"),
		Body: strings.NewReader("data"), Metadata: map[string]string{"mtime": "1000000000"}}); err != nil {
		t.Fatal(err)
	}
	head, err := cl.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("mtimes"), Key: aws.String("kept.txt")})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want time.Time
	}{
		{"last-modified by default", nil, aws.ToTime(head.LastModified)},
		{"metadata with --mount-object-mtimes", []string{"--mount-object-mtimes"}, kept},
	} {
		t.Run(tc.name, func(t *testing.T) {
			drv := testenv.StartDriver(t, srv, tc.args...)
			c := drv.Dial(t)
			staging := filepath.Join(drv.TempDir(t), "staging")
			if err := os.MkdirAll(staging, 0o750); err != nil {
				t.Fatal(err)
			}
			id := "v1:s3:Mps:-:mtimes"
			if _, err := c.Node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging,
				VolumeCapability: testenv.MountCap(rwx), Secrets: srv.Secrets()}); err != nil {
				t.Fatal(err)
			}
			st, err := os.Stat(filepath.Join(staging, "kept.txt"))
			if err != nil {
				t.Fatal(err)
			}
			if d := st.ModTime().Sub(tc.want); d < -time.Second || d > time.Second {
				t.Fatalf("mtime %v, want %v", st.ModTime().UTC(), tc.want.UTC())
			}
			if _, err := c.Node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
				t.Fatal(err)
			}
		})
	}
}
