// Command demo is `make demo`: bucket-csi's main job on a local default,
// with no cloud account. It starts a local S3 server (versitygw) and the
// driver binary, provisions a volume the way the external-provisioner does,
// stages and publishes it the way kubelet does, writes a file into the
// published directory, shows the object through an independent S3 listing,
// and cleans everything up.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/bucket-csi/bucket-csi/internal/localenv"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
	fmt.Println("\ndemo finished: everything was cleaned up")
}

func step(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }

func run() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("the demo mounts FUSE filesystems and needs root (try: sudo make demo)")
	}
	work, err := os.MkdirTemp("", "bucket-csi-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	step("starting a local S3 server (versitygw) with its data in %s", filepath.Join(work, "s3"))
	if err := os.MkdirAll(filepath.Join(work, "s3"), 0o700); err != nil {
		return err
	}
	srv, err := localenv.StartS3(filepath.Join(work, "s3"), "", "")
	if err != nil {
		return err
	}
	defer srv.Stop()
	step("starting bucket-csi (controller + node) on a Unix socket")
	drv, err := localenv.StartDriver(srv)
	if err != nil {
		return err
	}
	defer drv.Stop()
	conn, err := grpc.NewClient("unix://"+drv.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctrl, node := csi.NewControllerClient(conn), csi.NewNodeClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	secrets := map[string]string{"accessKeyID": srv.AccessKey, "secretAccessKey": srv.SecretKey}
	vcap := &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER},
	}

	step("CreateVolume for PVC default/demo-data (StorageClass parameters: mode MOUNT, persistent false)")
	vol, err := ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{
		Name:               "pvc-0d3e8b1c-demo",
		VolumeCapabilities: []*csi.VolumeCapability{vcap},
		Parameters: map[string]string{"mode": "MOUNT", "persistent": "false",
			"csi.storage.k8s.io/pvc/name": "demo-data", "csi.storage.k8s.io/pvc/namespace": "default", "csi.storage.k8s.io/pv/name": "pvc-0d3e8b1c-demo"},
		Secrets: secrets,
	})
	if err != nil {
		return fmt.Errorf("CreateVolume: %w", err)
	}
	id, bucket := vol.GetVolume().GetVolumeId(), vol.GetVolume().GetVolumeContext()["bucket"]
	fmt.Printf("    volume ID %s\n    bucket    %s\n", id, bucket)

	staging := filepath.Join(drv.Dir, "kubelet", "globalmount")
	target := filepath.Join(drv.Dir, "kubelet", "pods", "demo-pod", "mount")
	for _, d := range []string{staging, filepath.Dir(target)} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return err
		}
	}
	step("NodeStageVolume at %s (starts the FUSE server)", staging)
	if _, err := node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: vcap, Secrets: secrets}); err != nil {
		return fmt.Errorf("NodeStageVolume: %w", err)
	}
	step("NodePublishVolume at %s (the pod's view)", target)
	if _, err := node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: target, VolumeCapability: vcap}); err != nil {
		return fmt.Errorf("NodePublishVolume: %w", err)
	}
	msg := fmt.Sprintf("hello from a pod, written at %s\n", time.Now().UTC().Format(time.RFC3339))
	step("the pod writes %s/results/hello.txt", target)
	if err := os.MkdirAll(filepath.Join(target, "results"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(target, "results", "hello.txt"), []byte(msg), 0o644); err != nil {
		return err
	}

	step("independent S3 listing of s3://%s (plain aws-sdk-go-v2, not the driver)", bucket)
	client := s3.NewFromConfig(aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider(srv.AccessKey, srv.SecretKey, "")},
		func(o *s3.Options) { o.BaseEndpoint = aws.String(srv.Endpoint); o.UsePathStyle = true })
	list, err := client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	if err != nil {
		return fmt.Errorf("listing: %w", err)
	}
	found := false
	for _, o := range list.Contents {
		fmt.Printf("    %8d  %s\n", aws.ToInt64(o.Size), aws.ToString(o.Key))
		found = found || aws.ToString(o.Key) == "results/hello.txt"
	}
	if !found {
		return fmt.Errorf("results/hello.txt is not in the bucket")
	}
	fmt.Println("    (.bucket-csi/ holds the driver's signed ownership mark and the volume record; mounts hide it)")

	step("NodeUnpublishVolume, NodeUnstageVolume, DeleteVolume (persistent false: the driver's bucket is deleted)")
	if _, err := node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
		return fmt.Errorf("NodeUnpublishVolume: %w", err)
	}
	if _, err := node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
		return fmt.Errorf("NodeUnstageVolume: %w", err)
	}
	if _, err := ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id, Secrets: secrets}); err != nil {
		return fmt.Errorf("DeleteVolume: %w", err)
	}
	if _, err := client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)}); err == nil {
		return fmt.Errorf("bucket %s still exists", bucket)
	}
	fmt.Printf("    bucket %s is gone\n", bucket)
	return nil
}
