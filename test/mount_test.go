package test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bucket-csi/bucket-csi/test/testenv"
)

const rwx = csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER

// TestMountWriteReadBack writes files through a MOUNT volume (dynamically
// provisioned, staged and published over the driver's socket) and reads
// them back with an independent S3 client: close-to-open means a closed
// file is in the bucket. Files written in the bucket show up in the mount.
func TestMountWriteReadBack(t *testing.T) {
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t)
	ctx := context.Background()
	indep := s3.Store(t)

	vol, err := c.Controller.CreateVolume(ctx, &csi.CreateVolumeRequest{
		Name:               "pvc-rw-1",
		VolumeCapabilities: []*csi.VolumeCapability{testenv.MountCap(rwx)},
		Parameters:         map[string]string{"mode": "MOUNT", "csi.storage.k8s.io/pvc/name": "data", "csi.storage.k8s.io/pvc/namespace": "ns1", "csi.storage.k8s.io/pv/name": "pvc-rw-1"},
		Secrets:            s3.Secrets(),
	})
	if err != nil {
		t.Fatalf("CreateVolume: %v", err)
	}
	id := vol.GetVolume().GetVolumeId()
	bucketName := vol.GetVolume().GetVolumeContext()["bucket"]
	if bucketName != "bucket-csi-pvc-rw-1" {
		t.Fatalf("bucket = %q, want the PV name with the driver prefix", bucketName)
	}
	staging, target := podPaths(t, drv)
	publish(t, c, id, staging, target, s3.Secrets(), false, "dir-cache-time=1s")

	files := map[string][]byte{"a.txt": []byte("hello bucket\n"), "dir/sub/big.bin": randomBytes(t, 9<<20+123)}
	for name, data := range files {
		p := filepath.Join(target, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatalf("writing %s through the mount: %v", name, err)
		}
	}
	for name, data := range files {
		got, err := s3.ReadObject(t, bucketName, name)
		if err != nil {
			t.Fatalf("independent read of %s: %v", name, err)
		}
		if sha256.Sum256(got) != sha256.Sum256(data) {
			t.Fatalf("%s: sha256 differs (%d bytes in bucket, %d written)", name, len(got), len(data))
		}
	}
	// The driver's own objects are in the bucket but hidden from the mount.
	if _, err := indep.GetObject(ctx, bucketName, ".bucket-csi/owner.json"); err != nil {
		t.Fatalf("owner mark missing: %v", err)
	}
	// Listed nowhere, and reserved: every access answers EPERM.
	if _, err := os.Stat(filepath.Join(target, ".bucket-csi")); !errors.Is(err, syscall.EPERM) {
		t.Fatalf("stat of .bucket-csi in the mount: %v, want EPERM", err)
	}
	// An object written by someone else appears in the mount once the
	// directory cache (dir-cache-time=1s, set as a mount flag) expires.
	if err := indep.PutObject(ctx, bucketName, "external.txt", []byte("from outside")); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if got, err = os.ReadFile(filepath.Join(target, "external.txt")); err == nil {
			break
		}
	}
	if err != nil || string(got) != "from outside" {
		t.Fatalf("reading an external object through the mount: %q, %v", got, err)
	}
	drv.AssertNoSecret(t, s3.SecretKey)
	staged := drv.Staged(t)
	if len(staged) != 1 || !staged[0].Server.Alive() {
		t.Fatalf("want one staged volume with a live FUSE server, got %+v", staged)
	}
	unpublish(t, c, id, staging, target)
	if staged[0].Server.Alive() {
		t.Fatalf("FUSE server %d still running after NodeUnstageVolume", staged[0].Server.Pid)
	}
	if left := drv.Staged(t); len(left) != 0 {
		t.Fatalf("node state left after unstage: %+v", left)
	}
	if _, err := c.Controller.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id, Secrets: s3.Secrets()}); err != nil {
		t.Fatalf("DeleteVolume: %v", err)
	}
	// persistent defaults to true: the data stays.
	if err := indep.HeadBucket(ctx, bucketName); err != nil {
		t.Fatalf("persistent bucket gone after DeleteVolume: %v", err)
	}
}

// TestReadOnlyPublish: a read-only publish refuses writes.
func TestReadOnlyPublish(t *testing.T) {
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t)
	ctx := context.Background()
	indep := s3.Store(t)
	if err := indep.CreateBucket(ctx, "dataset"); err != nil {
		t.Fatal(err)
	}
	if err := indep.PutObject(ctx, "dataset", "train/x.csv", []byte("1,2,3\n")); err != nil {
		t.Fatal(err)
	}
	vol, err := c.Controller.CreateVolume(ctx, &csi.CreateVolumeRequest{
		Name: "pv-static", VolumeCapabilities: []*csi.VolumeCapability{testenv.MountCap(rwx)},
		Parameters: map[string]string{"source": "s3://dataset/train"}, Secrets: s3.Secrets(),
	})
	if err != nil {
		t.Fatal(err)
	}
	id := vol.GetVolume().GetVolumeId()
	work := drv.TempDir(t)
	staging, target := filepath.Join(work, "staging"), filepath.Join(work, "target")
	publish(t, c, id, staging, target, s3.Secrets(), true)
	got, err := os.ReadFile(filepath.Join(target, "x.csv"))
	if err != nil || string(got) != "1,2,3\n" {
		t.Fatalf("read through the prefix mount: %q %v", got, err)
	}
	if err := os.WriteFile(filepath.Join(target, "new.txt"), []byte("x"), 0o644); err == nil {
		t.Fatal("write succeeded on a read-only publish")
	}
	unpublish(t, c, id, staging, target)
}

// startAll starts a server and the driver (with args) and dials it.
func startAll(t *testing.T, args ...string) (*testenv.S3, *testenv.Driver, testenv.Clients) {
	t.Helper()
	s3 := testenv.StartS3(t)
	drv := testenv.StartDriver(t, s3, args...)
	return s3, drv, drv.Dial(t)
}

// podPaths returns a new staging path and pod target path below drv's
// directory, as kubelet lays them out.
func podPaths(t *testing.T, drv *testenv.Driver) (staging, target string) {
	t.Helper()
	work := drv.TempDir(t)
	return filepath.Join(work, "staging"), filepath.Join(work, "pod", "mount")
}

// publish stages id at staging (secrets, mount flags) and publishes it at
// target, read-only with ro, failing the test on an error.
func publish(t *testing.T, c testenv.Clients, id, staging, target string, secrets map[string]string, ro bool, flags ...string) {
	t.Helper()
	publishContext(t, c, id, staging, target, nil, secrets, ro, flags...)
}

// publishContext is publish with the volume context kubelet passes from the
// PV (CreateVolume's answer: the bucket, a profile).
func publishContext(t *testing.T, c testenv.Clients, id, staging, target string, vctx, secrets map[string]string, ro bool, flags ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// A dead FUSE mount at staging makes MkdirAll fail with EEXIST.
	if err := os.MkdirAll(staging, 0o750); err != nil && !errors.Is(err, syscall.EEXIST) {
		t.Fatal(err)
	}
	if _, err := c.Node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: testenv.MountCap(rwx, flags...), VolumeContext: vctx, Secrets: secrets}); err != nil {
		t.Fatalf("NodeStageVolume: %v", err)
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: target, VolumeCapability: testenv.MountCap(rwx), VolumeContext: vctx, Readonly: ro}); err != nil {
		t.Fatalf("NodePublishVolume: %v", err)
	}
}

func unpublish(t *testing.T, c testenv.Clients, id, staging, target string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := c.Node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
		t.Fatalf("NodeUnpublishVolume: %v", err)
	}
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("target path left behind: %v", err)
	}
	if _, err := c.Node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
		t.Fatalf("NodeUnstageVolume: %v", err)
	}
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestStaticPV: a static PersistentVolume whose volumeHandle the admin
// chose (not one the controller issued) is staged from its
// volumeAttributes, as kubelet sends them.
func TestStaticPV(t *testing.T) {
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t)
	ctx := context.Background()
	if err := s3.Store(t).CreateBucket(ctx, "static-data"); err != nil {
		t.Fatal(err)
	}
	if err := s3.Store(t).PutObject(ctx, "static-data", "in/x.txt", []byte("static")); err != nil {
		t.Fatal(err)
	}
	staging, target := podPaths(t, drv)
	if err := os.MkdirAll(staging, 0o750); err != nil {
		t.Fatal(err)
	}
	attrs := map[string]string{"source": "s3://static-data/in", "mode": "MOUNT"}
	if _, err := c.Node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: "my-static-pv", StagingTargetPath: staging, VolumeCapability: testenv.MountCap(rwx), VolumeContext: attrs, Secrets: s3.Secrets()}); err != nil {
		t.Fatalf("NodeStage of a static PV: %v", err)
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: "my-static-pv", StagingTargetPath: staging, TargetPath: target, VolumeCapability: testenv.MountCap(rwx), VolumeContext: attrs}); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(target, "x.txt")); err != nil || string(got) != "static" {
		t.Fatalf("reading the static PV: %q %v", got, err)
	}
	unpublish(t, c, "my-static-pv", staging, target)
	if _, err := c.Node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: "no-attributes", StagingTargetPath: staging, VolumeCapability: testenv.MountCap(rwx)}); status.Code(err) != codes.NotFound {
		t.Fatalf("a handle without attributes = %v, want NotFound", err)
	}
}

// TestVolumeMountGroup: the pod's fsGroup, passed by kubelet as the volume
// mount group, owns the files, which are group-writable; uid and umask
// mount options apply.
func TestVolumeMountGroup(t *testing.T) {
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t)
	ctx := context.Background()
	v, err := c.Controller.CreateVolume(ctx, createReq("pvc-group", nil, s3.Secrets()))
	if err != nil {
		t.Fatal(err)
	}
	id := v.GetVolume().GetVolumeId()
	staging := filepath.Join(drv.TempDir(t), "staging")
	if err := os.MkdirAll(staging, 0o750); err != nil {
		t.Fatal(err)
	}
	vc := testenv.MountCap(rwx, "uid=1000", "umask=077")
	vc.GetMount().VolumeMountGroup = "2000"
	if _, err := c.Node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: vc, Secrets: s3.Secrets()}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(staging, "f.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(staging, "f.txt"))
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if sys.Uid != 1000 || sys.Gid != 2000 || st.Mode().Perm() != 0o660 {
		t.Fatalf("file owner %d:%d mode %v, want 1000:2000 0660", sys.Uid, sys.Gid, st.Mode().Perm())
	}
	if _, err := c.Node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
		t.Fatal(err)
	}
}

// TestPrefixNamedLikeAnObject: a volume of prefix team-a in a bucket that
// also holds an object named team-a shows what is below team-a/ (nothing
// here: the test server keeps objects as files and cannot hold team-a/x
// beside team-a), through MOUNT and COPY alike. The FUSE server used to
// serve the directory above the prefix, the bucket's root with the other
// teams' keys, and COPY answered Unavailable at every try.
func TestPrefixNamedLikeAnObject(t *testing.T) {
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t)
	ctx := context.Background()
	indep := s3.Store(t)
	if err := indep.CreateBucket(ctx, "shared"); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"team-a", "team-b/secret.txt"} {
		if err := indep.PutObject(ctx, "shared", k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	for _, mode := range []string{"MOUNT", "COPY"} {
		t.Run(mode, func(t *testing.T) {
			vol, err := c.Controller.CreateVolume(ctx, createReq("pv-team-a-"+strings.ToLower(mode), map[string]string{"source": "s3://shared/team-a", "mode": mode}, s3.Secrets()))
			if err != nil {
				t.Fatal(err)
			}
			id := vol.GetVolume().GetVolumeId()
			staging, target := podPaths(t, drv)
			if err := os.MkdirAll(staging, 0o750); err != nil {
				t.Fatal(err)
			}
			// A COPY answers Unavailable while it runs: a minute at most.
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
				_, err := c.Node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: testenv.MountCap(rwx), Secrets: s3.Secrets()})
				if err == nil {
					break
				}
				if status.Code(err) != codes.Unavailable || time.Now().After(deadline) {
					t.Fatalf("NodeStageVolume: %v", err)
				}
			}
			if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: target, VolumeCapability: testenv.MountCap(rwx), Readonly: true}); err != nil {
				t.Fatal(err)
			}
			ents, err := os.ReadDir(target)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			if len(names) != 0 {
				t.Fatalf("the volume of prefix team-a shows %q, want nothing (not the bucket's root)", names)
			}
			unpublish(t, c, id, staging, target)
		})
	}
}
