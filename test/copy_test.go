package test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bucket-csi/bucket-csi/pkg/mountpoint"
	"github.com/bucket-csi/bucket-csi/pkg/nodestate"
	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// fillSource creates bucket with n small objects and one large one, and
// returns their sha256 by key.
func fillSource(t *testing.T, s3 *testenv.S3, bucket string, n int) map[string][32]byte {
	t.Helper()
	ctx := context.Background()
	st := s3.Store(t)
	if err := st.CreateBucket(ctx, bucket); err != nil {
		t.Fatal(err)
	}
	sums := map[string][32]byte{}
	putObj := func(key string, data []byte) {
		if err := st.PutObject(ctx, bucket, key, data); err != nil {
			t.Fatal(err)
		}
		sums[key] = sha256.Sum256(data)
	}
	for i := 0; i < n; i++ {
		putObj(fmt.Sprintf("shard-%02d/item-%04d.json", i%10, i), []byte(strings.Repeat(fmt.Sprint(i), 100)))
	}
	putObj("weights/model.bin", randomBytes(t, 40<<20+11))
	return sums
}

func stageCopy(t *testing.T, c testenv.Clients, id, staging string, secrets map[string]string) error {
	t.Helper()
	if err := os.MkdirAll(staging, 0o750); err != nil {
		t.Fatal(err)
	}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		_, err := c.Node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: testenv.MountCap(rwx), Secrets: secrets})
		cancel()
		if status.Code(err) != codes.Unavailable {
			return err
		}
	}
}

// TestCopyMode: COPY downloads the prefix (sha256 equal), publishes it,
// keeps writes local, fetches only changed objects on a re-stage, and
// refuses up front when the disk cannot hold the data.
func TestCopyMode(t *testing.T) {
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t, "--keep-copies")
	sums := fillSource(t, s3, "training-data", 300)
	ctx := context.Background()
	vol, err := c.Controller.CreateVolume(ctx, createReq("pv-copy", map[string]string{"source": "s3://training-data", "mode": "COPY"}, s3.Secrets()))
	if err != nil {
		t.Fatal(err)
	}
	id := vol.GetVolume().GetVolumeId()
	staging, target := podPaths(t, drv)
	if err := stageCopy(t, c, id, staging, s3.Secrets()); err != nil {
		t.Fatalf("NodeStageVolume (COPY): %v", err)
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: target, VolumeCapability: testenv.MountCap(rwx)}); err != nil {
		t.Fatal(err)
	}
	for key, want := range sums {
		got, err := os.ReadFile(filepath.Join(target, key))
		if err != nil || sha256.Sum256(got) != want {
			t.Fatalf("%s in the copy: err %v or sha256 differs", key, err)
		}
	}
	if err := os.WriteFile(filepath.Join(target, "local-only.txt"), []byte("x"), 0o644); err != nil {
		t.Fatalf("writing to a COPY volume: %v", err)
	}
	unpublish(t, c, id, staging, target)
	if _, err := s3.ReadObject(t, "training-data", "local-only.txt"); err == nil {
		t.Fatal("a write to a COPY volume reached the bucket")
	}
	// Re-stage after one object changed: only it is downloaded again.
	if err := s3.Store(t).PutObject(ctx, "training-data", "shard-03/item-0003.json", []byte("changed")); err != nil {
		t.Fatal(err)
	}
	if err := stageCopy(t, c, id, staging, s3.Secrets()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(drv.Log.String(), "downloaded=1 ") {
		t.Fatalf("re-stage did not fetch exactly the one changed object; driver log:\n%s", drv.Log.String())
	}
	if got, _ := os.ReadFile(filepath.Join(staging, "shard-03/item-0003.json")); string(got) != "changed" {
		t.Fatalf("changed object not updated: %q", got)
	}
	if _, err := c.Node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
		t.Fatal(err)
	}
}

// TestCopyRefusedWhenDiskTooSmall: a node whose copy disk is smaller than
// the data answers ResourceExhausted with both figures, and publishes
// nothing.
func TestCopyRefusedWhenDiskTooSmall(t *testing.T) {
	testenv.RequireFUSE(t)
	small := filepath.Join(t.TempDir(), "small")
	if err := os.MkdirAll(small, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", small, "tmpfs", 0, "size=8m"); err != nil {
		testenv.Missing(t, "mounting a tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(small, unix.MNT_DETACH) })
	s3, drv, c := startAll(t, "--state-dir", small)
	fillSource(t, s3, "too-big", 3)
	vol, err := c.Controller.CreateVolume(context.Background(), createReq("pv-big", map[string]string{"source": "s3://too-big", "mode": "COPY"}, s3.Secrets()))
	if err != nil {
		t.Fatal(err)
	}
	staging := filepath.Join(drv.TempDir(t), "staging")
	err = stageCopy(t, c, vol.GetVolume().GetVolumeId(), staging, s3.Secrets())
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "bytes are free") {
		t.Fatalf("stage of a copy larger than the disk = %v, want ResourceExhausted with the figures", err)
	}
	if ok, _ := mountpoint.Mounted(staging); ok {
		t.Fatal("a refused copy was published")
	}
}

// TestPublishTakesOverItsOwnCopyBind: a publish cut off after its bind and
// before its record named the target (a plugin killed in between) leaves
// the bind at the target; kubelet's retry takes it over and answers OK,
// for a read-only COPY stage (a bind of the copy) and a writable one (an
// overlay). The bind was taken for a foreign mount (the check knew only
// FUSE mounts as the driver's) and the retry answered FailedPrecondition
// for ever, a final code, so the pod never started.
func TestPublishTakesOverItsOwnCopyBind(t *testing.T) {
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t)
	ctx := context.Background()
	if err := s3.Store(t).CreateBucket(ctx, "cut-bind"); err != nil {
		t.Fatal(err)
	}
	if err := s3.Store(t).PutObject(ctx, "cut-bind", "a.txt", []byte("copied")); err != nil {
		t.Fatal(err)
	}
	state := nodestate.Dir{Root: drv.StateDir}
	for _, ro := range []bool{true, false} {
		t.Run(fmt.Sprintf("read-only=%v", ro), func(t *testing.T) {
			vol, err := c.Controller.CreateVolume(ctx, createReq(fmt.Sprintf("pv-cut-%v", ro), map[string]string{"source": "s3://cut-bind", "mode": "COPY"}, s3.Secrets()))
			if err != nil {
				t.Fatal(err)
			}
			id := vol.GetVolume().GetVolumeId()
			staging, target := podPaths(t, drv)
			var flags []string
			if ro {
				flags = []string{"ro"}
			}
			if err := os.MkdirAll(staging, 0o750); err != nil {
				t.Fatal(err)
			}
			for {
				_, err = c.Node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: testenv.MountCap(rwx, flags...), Secrets: s3.Secrets()})
				if status.Code(err) != codes.Unavailable {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil {
				t.Fatalf("NodeStageVolume: %v", err)
			}
			if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
				t.Fatal(err)
			}
			req := &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: target, VolumeCapability: testenv.MountCap(rwx, flags...)}
			if _, err := c.Node.NodePublishVolume(ctx, req); err != nil {
				t.Fatal(err)
			}
			// The record as it was before the publish saved it.
			rec, err := state.Load(id)
			if err != nil || rec == nil {
				t.Fatalf("record: %+v %v", rec, err)
			}
			rec.Targets = nil
			if err := state.Save(rec); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Node.NodePublishVolume(ctx, req); err != nil {
				t.Fatalf("the retry of a publish cut off after its bind: %v", err)
			}
			if got, err := os.ReadFile(filepath.Join(target, "a.txt")); err != nil || string(got) != "copied" {
				t.Fatalf("reading through the target: %q %v", got, err)
			}
			if n := mountsAt(t, target); n != 1 {
				t.Fatalf("%d mounts at the target, want the one bind", n)
			}
			if rec, _ := state.Load(id); rec == nil || len(rec.Targets) != 1 || rec.Targets[0] != target {
				t.Fatalf("record after the retry: %+v, want the target recorded", rec)
			}
			unpublish(t, c, id, staging, target)
		})
	}
}

// mountsAt counts the mounts stacked at path in this process's mountinfo.
func mountsAt(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == path {
			n++
		}
	}
	return n
}

// TestCopyWriteSpaceMadeDuringDownload: a writable COPY volume's write
// space is made and mounted while the copy downloads (once the copy's
// reservation holds it), not after: with one object's GET held, the
// write space is mounted and the staging path is not. An unstage then
// stops the copy and drops the write space with its image. A read-only
// stage of the volume makes none, while its copy runs or after; a
// writable one, once the GETs are let go, publishes the copy over its
// write space.
func TestCopyWriteSpaceMadeDuringDownload(t *testing.T) {
	testenv.RequireFUSE(t)
	s3 := testenv.StartS3(t)
	first, second := make(chan struct{}), make(chan struct{})
	proxy := startFaultProxy(t, s3.Endpoint, nil, map[string]chan struct{}{"/early-writes/slow.bin": first, "/early-writes/slow2.bin": second})
	drv, c := proxy.startDriver(t, s3, "early-writes")
	for k, v := range map[string]string{"a.txt": "a", "slow.bin": "slow", "slow2.bin": "slow2"} {
		putRaw(t, s3.Client(), "early-writes", k, v)
	}
	ctx := context.Background()
	vol, err := c.Controller.CreateVolume(ctx, createReq("pv-early-writes", map[string]string{"source": "s3://early-writes", "mode": "COPY"}, s3.Secrets()))
	if err != nil {
		t.Fatal(err)
	}
	id := vol.GetVolume().GetVolumeId()
	staging, _ := podPaths(t, drv)
	if err := os.MkdirAll(staging, 0o750); err != nil {
		t.Fatal(err)
	}
	readOnly := testenv.MountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY)
	// stageOnce makes one NodeStage call, answered Unavailable while the
	// copy runs (after 2 s: the driver answers 5 s before the deadline).
	stageOnce := func(capability *csi.VolumeCapability) error {
		ctx, cancel := context.WithTimeout(context.Background(), 7*time.Second)
		defer cancel()
		_, err := c.Node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: capability, Secrets: s3.Secrets()})
		return err
	}
	writesOf := func() (dir, img string) {
		imgs, _ := filepath.Glob(filepath.Join(drv.StateDir, "copies", "*", "writes.img"))
		if len(imgs) != 1 {
			return "", ""
		}
		return strings.TrimSuffix(imgs[0], ".img"), imgs[0]
	}
	if err := stageOnce(testenv.MountCap(rwx)); status.Code(err) != codes.Unavailable {
		t.Fatalf("NodeStage while slow.bin is held = %v, want Unavailable (the copy runs)", err)
	}
	var writes, img string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if writes, img = writesOf(); writes != "" {
			if ok, _ := mountpoint.Mounted(writes); ok {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the write space was not mounted while the copy downloaded (image %q)", img)
		}
	}
	if ok, _ := mountpoint.Mounted(staging); ok {
		t.Fatal("the staging path is mounted while the copy still downloads")
	}
	unstage(t, c, id, staging)
	if ok, _ := mountpoint.Mounted(writes); ok {
		t.Fatal("the write space is still mounted after the unstage of a copy that was downloading")
	}
	for _, p := range []string{img, writes} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("%s is left after the unstage: %v", p, err)
		}
	}

	// Read-only, with slow2.bin still held: the copy is downloading.
	close(first)
	if err := stageOnce(readOnly); status.Code(err) != codes.Unavailable {
		t.Fatalf("read-only NodeStage while slow2.bin is held = %v, want Unavailable (the copy runs)", err)
	}
	if w, _ := writesOf(); w != "" {
		t.Fatalf("the copy of a read-only COPY volume made a write space at %s", w)
	}
	close(second)
	for deadline := time.Now().Add(2 * time.Minute); ; {
		err := stageOnce(readOnly)
		if err == nil {
			break
		}
		if status.Code(err) != codes.Unavailable || time.Now().After(deadline) {
			t.Fatalf("read-only NodeStage once the GETs are let go = %v", err)
		}
	}
	if w, _ := writesOf(); w != "" {
		t.Fatalf("a read-only COPY volume made a write space at %s", w)
	}
	unstage(t, c, id, staging)

	if err := stageCopy(t, c, id, staging, s3.Secrets()); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(staging, "slow.bin")); err != nil || string(got) != "slow" {
		t.Fatalf("slow.bin in the published copy = %q, %v", got, err)
	}
	if err := os.WriteFile(filepath.Join(staging, "pod.txt"), []byte("written"), 0o644); err != nil {
		t.Fatalf("writing into the writable copy: %v", err)
	}
	if writes, _ = writesOf(); writes == "" {
		t.Fatal("no write space under the published writable copy")
	}
	if _, err := os.Stat(filepath.Join(writes, "upper", "pod.txt")); err != nil {
		t.Fatalf("the pod's write is not in the write space: %v", err)
	}
	unstage(t, c, id, staging)
}
