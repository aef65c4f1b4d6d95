package test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bucket-csi/bucket-csi/internal/localenv"
	"github.com/bucket-csi/bucket-csi/pkg/store"
	"github.com/bucket-csi/bucket-csi/pkg/store/azurestore"
	"github.com/bucket-csi/bucket-csi/pkg/store/gcsstore"
	"github.com/bucket-csi/bucket-csi/pkg/store/ocistore"
	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// TestMountOtherStores writes files through MOUNT volumes on GCS
// (fake-gcs-server), Azure (Azurite), IBM COS (versitygw through the IBM
// profile) and OCI (the local stand-in) and reads them back with the store's SDK, and reads an
// object written by the SDK through the mount.
func TestMountOtherStores(t *testing.T) {
	testenv.RequireFUSE(t)
	s3 := testenv.StartS3(t)
	emu := testenv.StartEmulators(t)
	// IBM COS is served by versitygw (region us-east-1) through the profile.
	oci := testenv.StartOCI(t)
	args := append(append(emu.Args, "--ibm-endpoint", s3.Endpoint, "--ibm-region", "us-east-1"), oci.Args()...)
	drv := testenv.StartDriver(t, s3, args...)
	c := drv.Dial(t)
	gcs, err := gcsstore.Open(gcsstore.Config{Endpoint: emu.GCS.Endpoint, ProjectID: localenv.GCSProject}, nil)
	if err != nil {
		t.Fatal(err)
	}
	az, err := azurestore.Open(azurestore.Config{Account: localenv.AzuriteAccount, Endpoint: emu.AzureEndpoint()}, "", testenv.AzureSecrets())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		store   string
		sdk     store.Store
		secrets map[string]string
	}{{"gcs", gcs, nil}, {"azure", az, testenv.AzureSecrets()}, {"ibm", s3.Store(t), s3.Secrets()}, {"oci", mustOpen(t, ocistore.Backend(oci.Config), oci.Secrets()), oci.Secrets()}} {
		t.Run(tc.store, func(t *testing.T) {
			ctx := context.Background()
			vol, err := c.Controller.CreateVolume(ctx, createReq("pvc-"+tc.store, map[string]string{"store": tc.store}, tc.secrets))
			if err != nil {
				t.Fatalf("CreateVolume: %v", err)
			}
			id, bucketName := vol.GetVolume().GetVolumeId(), vol.GetVolume().GetVolumeContext()["bucket"]
			staging, target := podPaths(t, drv)
			publish(t, c, id, staging, target, tc.secrets, false, "dir-cache-time=1s")
			files := map[string][]byte{"hello.txt": []byte("hello " + tc.store), "deep/dir/blob.bin": randomBytes(t, 900<<10)}
			for name, data := range files {
				p := filepath.Join(target, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, data, 0o644); err != nil {
					t.Fatalf("writing %s: %v", name, err)
				}
			}
			for name, data := range files {
				got, err := tc.sdk.GetObject(ctx, bucketName, name)
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("%s in the bucket: %d bytes, %v", name, len(got), err)
				}
			}
			if err := tc.sdk.PutObject(ctx, bucketName, "from-sdk.txt", []byte("sdk")); err != nil {
				t.Fatal(err)
			}
			var got []byte
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
				if got, err = os.ReadFile(filepath.Join(target, "from-sdk.txt")); err == nil {
					break
				}
			}
			if string(got) != "sdk" {
				t.Fatalf("object written by the SDK, read through the mount: %q %v", got, err)
			}
			unpublish(t, c, id, staging, target)
		})
	}
}
