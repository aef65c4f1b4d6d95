package test

import (
	"context"
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

	"github.com/bucket-csi/bucket-csi/pkg/mounter"
	"github.com/bucket-csi/bucket-csi/pkg/nodestate"
	"github.com/bucket-csi/bucket-csi/pkg/stage"
	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// stageVol is NodeStage as kubelet sends it, with its own deadline and
// the staging directory created first.
func stageVol(t *testing.T, c testenv.Clients, id, staging string, vc *csi.VolumeCapability, attrs, secrets map[string]string) error {
	t.Helper()
	if err := os.MkdirAll(staging, 0o750); err != nil && !errors.Is(err, syscall.EEXIST) {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := c.Node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: vc, VolumeContext: attrs, Secrets: secrets})
	return err
}

// wantStatus fails unless err has code and its message holds every part.
func wantStatus(t *testing.T, what string, err error, code codes.Code, parts ...string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code {
		t.Fatalf("%s = %v, want %v", what, err, code)
	}
	for _, p := range parts {
		if !strings.Contains(st.Message(), p) {
			t.Fatalf("%s: message %q does not say %q", what, st.Message(), p)
		}
	}
}

// stagedRecord returns the node record of id.
func stagedRecord(t *testing.T, drv *testenv.Driver, id string) *nodestate.Volume {
	t.Helper()
	rec, err := nodestate.Dir{Root: drv.StateDir}.Load(id)
	if err != nil || rec == nil {
		t.Fatalf("node record of %s: %v %v", id, rec, err)
	}
	return rec
}

// TestSourceVolumesIsolated: two PVCs of one `source` StorageClass get
// their own volume IDs, so each is staged on its own with its own
// node-stage secret (a wrong secret for the second is not covered by the
// first's stage), and single-writer access of one does not block the other.
func TestSourceVolumesIsolated(t *testing.T) {
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t)
	ctx := context.Background()
	indep := s3.Store(t)
	if err := indep.CreateBucket(ctx, "team-data"); err != nil {
		t.Fatal(err)
	}
	if err := indep.PutObject(ctx, "team-data", "in/a.txt", []byte("shared")); err != nil {
		t.Fatal(err)
	}
	params := map[string]string{"source": "s3://team-data/in"}
	ids := map[string]string{}
	for _, pv := range []string{"pvc-11111111-aaaa", "pvc-22222222-bbbb"} {
		v, err := c.Controller.CreateVolume(ctx, createReq(pv, params, s3.Secrets()))
		if err != nil {
			t.Fatalf("CreateVolume %s: %v", pv, err)
		}
		ids[pv] = v.GetVolume().GetVolumeId()
	}
	a, b := ids["pvc-11111111-aaaa"], ids["pvc-22222222-bbbb"]
	if a == b || !strings.HasPrefix(a, "v1:s3:Mps:") || !strings.HasSuffix(a, ":team-data/in") {
		t.Fatalf("volume IDs of two source PVCs: %q and %q", a, b)
	}
	for _, id := range []string{a, b} { // DeleteVolume of a source volume is a no-op
		if _, err := c.Controller.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id, Secrets: s3.Secrets()}); err != nil {
			t.Fatal(err)
		}
	}
	if got := keys(t, indep, "team-data"); len(got) != 1 {
		t.Fatalf("DeleteVolume of source volumes changed the bucket: %v", got)
	}
	vc := testenv.MountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER)
	stagingA, targetA := podPaths(t, drv)
	stagingB, targetB := podPaths(t, drv)
	if err := stageVol(t, c, a, stagingA, vc, nil, s3.Secrets()); err != nil {
		t.Fatalf("NodeStage A: %v", err)
	}
	// B's node-stage Secret is wrong: B must not be served by A's stage.
	wrong := map[string]string{"accessKeyID": s3.AccessKey, "secretAccessKey": "not-the-secret-key"}
	if err := stageVol(t, c, b, stagingB, vc, nil, wrong); err == nil {
		if got, rerr := os.ReadFile(filepath.Join(stagingB, "a.txt")); rerr == nil {
			t.Fatalf("PVC B read %q with a wrong secret: it is served with PVC A's", got)
		}
		if _, err := c.Node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: b, StagingTargetPath: stagingB}); err != nil {
			t.Fatal(err)
		}
	} else {
		t.Logf("NodeStage of B with a wrong secret: %v", err)
	}
	if err := stageVol(t, c, b, stagingB, vc, nil, s3.Secrets()); err != nil {
		t.Fatalf("NodeStage B with its own secret: %v", err)
	}
	recA, recB := stagedRecord(t, drv, a), stagedRecord(t, drv, b)
	if recA.Server.Pid == recB.Server.Pid || !recA.Server.Alive() || !recB.Server.Alive() {
		t.Fatalf("want one FUSE server per PVC: %+v %+v", recA.Server, recB.Server)
	}
	// RWOP is per PVC: each PVC has its single writer.
	for _, p := range [][3]string{{a, stagingA, targetA}, {b, stagingB, targetB}} {
		if err := os.MkdirAll(filepath.Dir(p[2]), 0o750); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: p[0], StagingTargetPath: p[1], TargetPath: p[2], VolumeCapability: vc}); err != nil {
			t.Fatalf("single-writer publish of %s: %v", p[0], err)
		}
	}
	unpublish(t, c, a, stagingA, targetA)
	if got, err := os.ReadFile(filepath.Join(targetB, "a.txt")); err != nil || string(got) != "shared" {
		t.Fatalf("PVC B after PVC A's unstage: %q %v", got, err)
	}
	unpublish(t, c, b, stagingB, targetB)
}

// TestRestageOtherSettings: a NodeStage repeated for a live stage with
// other secrets, mount options, access (read-only), mode or bucket answers
// AlreadyExists naming what differs and never a secret, and leaves the stage
// serving; the same request answers OK. A stale stage (its server killed)
// is staged again with the new request's settings. Inline publishes
// repeated with another secret answer AlreadyExists too.
func TestRestageOtherSettings(t *testing.T) {
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t, "--inline-stores", "s3")
	ctx := context.Background()
	indep := s3.Store(t)
	for _, b := range []string{"restage-a", "restage-b"} {
		if err := indep.CreateBucket(ctx, b); err != nil {
			t.Fatal(err)
		}
		if err := indep.PutObject(ctx, b, "f.txt", []byte(b)); err != nil {
			t.Fatal(err)
		}
	}
	id := "static-restage" // a static PV's admin-chosen handle
	attrs := map[string]string{"source": "s3://restage-a", "mode": "MOUNT"}
	vc := testenv.MountCap(rwx, "uid=1000")
	staging, target := podPaths(t, drv)
	if err := stageVol(t, c, id, staging, vc, attrs, s3.Secrets()); err != nil {
		t.Fatal(err)
	}
	first := stagedRecord(t, drv, id)
	if first.Staged == nil || first.Staged.SecretsMAC == "" {
		t.Fatalf("no fingerprint in the node record: %+v", first)
	}
	rotated := map[string]string{"accessKeyID": s3.AccessKey, "secretAccessKey": "rotated-secret-value"}
	roCap := testenv.MountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY, "uid=1000")
	for _, tc := range []struct {
		name    string
		vc      *csi.VolumeCapability
		attrs   map[string]string
		secrets map[string]string
		says    []string
	}{
		{"other secrets", vc, attrs, rotated, []string{"the secrets differ"}},
		{"other mount options", testenv.MountCap(rwx, "uid=2000"), attrs, s3.Secrets(), []string{"mount options", "uid=1000", "uid=2000"}},
		{"read-only access", roCap, attrs, s3.Secrets(), []string{"mount options", `"rw,`, `"ro,`}},
		{"other mode", vc, map[string]string{"source": "s3://restage-a", "mode": "MOUNT_CACHED"}, s3.Secrets(), []string{"mode MOUNT is staged, MOUNT_CACHED asked"}},
		{"other bucket", vc, map[string]string{"source": "s3://restage-b", "mode": "MOUNT"}, s3.Secrets(), []string{"s3://restage-a is staged, s3://restage-b asked"}},
	} {
		err := stageVol(t, c, id, staging, tc.vc, tc.attrs, tc.secrets)
		wantStatus(t, tc.name, err, codes.AlreadyExists, append(tc.says, "already staged")...)
		if strings.Contains(err.Error(), "rotated-secret-value") || strings.Contains(err.Error(), s3.SecretKey) {
			t.Fatalf("%s: the message shows a secret: %v", tc.name, err)
		}
		if rec := stagedRecord(t, drv, id); rec.Server != first.Server || rec.StagedAt != first.StagedAt {
			t.Fatalf("%s: the live stage was replaced", tc.name)
		}
	}
	if err := stageVol(t, c, id, staging, vc, attrs, s3.Secrets()); err != nil {
		t.Fatalf("the same NodeStage repeated: %v", err)
	}
	drv.AssertNoSecret(t, "rotated-secret-value")
	// Stale: the server is dead, so the repeat restages with its settings.
	if err := syscall.Kill(first.Server.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testenv.MustBeGone(t, first.Server)
	if err := stageVol(t, c, id, staging, testenv.MountCap(rwx, "uid=2000"), attrs, s3.Secrets()); err != nil {
		t.Fatalf("NodeStage over a dead stage with other options: %v", err)
	}
	again := stagedRecord(t, drv, id)
	if !again.Server.Alive() || again.Staged.Flags.UID != 2000 {
		t.Fatalf("stale stage not restaged as asked: %+v", again)
	}
	if got, err := os.ReadFile(filepath.Join(staging, "f.txt")); err != nil || string(got) != "restage-a" {
		t.Fatalf("reading the restaged volume: %q %v", got, err)
	}
	if _, err := c.Node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
		t.Fatal(err)
	}
	// Inline: a repeated publish of the pod's volume with another secret.
	if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
		t.Fatal(err)
	}
	inline := map[string]string{"source": "s3://restage-a"}
	if _, err := c.Node.NodePublishVolume(ctx, inlineReq(target, inline, s3.Secrets())); err != nil {
		t.Fatalf("inline publish: %v", err)
	}
	if _, err := c.Node.NodePublishVolume(ctx, inlineReq(target, inline, s3.Secrets())); err != nil {
		t.Fatalf("inline publish repeated: %v", err)
	}
	_, err := c.Node.NodePublishVolume(ctx, inlineReq(target, inline, rotated))
	wantStatus(t, "inline publish with another secret", err, codes.AlreadyExists, "the secrets differ")
	if _, err := c.Node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "csi-0123abcd", TargetPath: target}); err != nil {
		t.Fatal(err)
	}
	if left := drv.Staged(t); len(left) != 0 {
		t.Fatalf("stages left: %+v", left)
	}
}

// TestRepublishOtherCapability: NodePublish repeated on a published target
// answers OK with the same read-only flag and access mode, and
// AlreadyExists when either differs (CSI: incompatible volume_capability or
// readonly); a read-only staging answers OK to its repeated read-write
// publishes, whose binds are read-only.
func TestRepublishOtherCapability(t *testing.T) {
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t)
	ctx := context.Background()
	v, err := c.Controller.CreateVolume(ctx, createReq("pvc-republish", nil, s3.Secrets()))
	if err != nil {
		t.Fatal(err)
	}
	id := v.GetVolume().GetVolumeId()
	staging, target := podPaths(t, drv)
	publish(t, c, id, staging, target, s3.Secrets(), false)
	pubAt := func(staging, target string, ro bool, mode csi.VolumeCapability_AccessMode_Mode) error {
		_, err := c.Node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: target, VolumeCapability: testenv.MountCap(mode), Readonly: ro})
		return err
	}
	pub := func(ro bool, mode csi.VolumeCapability_AccessMode_Mode) error {
		return pubAt(staging, target, ro, mode)
	}
	if err := pub(false, rwx); err != nil {
		t.Fatalf("the same publish repeated: %v", err)
	}
	wantStatus(t, "read-only over read-write", pub(true, rwx), codes.AlreadyExists, "published read-write, read-only asked")
	wantStatus(t, "single-writer over shared", pub(false, csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER), codes.AlreadyExists, "single-writer")
	if err := os.WriteFile(filepath.Join(target, "w.txt"), []byte("x"), 0o644); err != nil {
		t.Fatalf("the read-write publish became read-only: %v", err)
	}
	if _, err := c.Node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := pub(true, csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER); err != nil {
		t.Fatal(err)
	}
	if err := pub(true, csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER); err != nil {
		t.Fatalf("the same read-only single-writer publish repeated: %v", err)
	}
	wantStatus(t, "read-write over read-only", pub(false, csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER), codes.AlreadyExists, "published read-only, read-write asked")
	wantStatus(t, "shared over single-writer", pub(true, rwx), codes.AlreadyExists, "shared")
	unpublish(t, c, id, staging, target)
	// A read-only staging: every bind of it is read-only, and a repeated
	// read-write publish is what the first one was.
	roStaging, roTarget := podPaths(t, drv)
	publish(t, c, id, roStaging, roTarget, s3.Secrets(), false, "ro")
	if err := pubAt(roStaging, roTarget, false, rwx); err != nil {
		t.Fatalf("read-write publish of a read-only staging repeated: %v", err)
	}
	if err := os.WriteFile(filepath.Join(roTarget, "w.txt"), []byte("x"), 0o644); err == nil {
		t.Fatal("wrote through a read-only staging")
	}
	unpublish(t, c, id, roStaging, roTarget)
}

// TestStaleCachedRestagedInOtherMode: a MOUNT_CACHED stage whose server
// was killed with uploads pending, staged again by a request that says
// MOUNT (a static PV re-created with another mode), is released with its
// own mode: flushed first, every file in the bucket before the MOUNT stage
// answers OK, well before the write-back delay.
func TestStaleCachedRestagedInOtherMode(t *testing.T) {
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t, "--write-back", "5m")
	ctx := context.Background()
	if err := s3.Store(t).CreateBucket(ctx, "cached-static"); err != nil {
		t.Fatal(err)
	}
	id := "static-cached"
	staging, target := podPaths(t, drv)
	cached := map[string]string{"source": "s3://cached-static", "mode": "MOUNT_CACHED"}
	if err := stageVol(t, c, id, staging, testenv.MountCap(rwx), cached, s3.Secrets()); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: target, VolumeCapability: testenv.MountCap(rwx), VolumeContext: cached}); err != nil {
		t.Fatal(err)
	}
	sums := writeFiles(t, target, 30)
	rec := stagedRecord(t, drv, id)
	// The kernel sends a FUSE release after close returns: wait until the
	// server has every file queued, so the kill loses nothing of its own.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		st, err := mounter.Query(ctx, stage.ControlSocket(rec), false)
		if err != nil {
			t.Fatal(err)
		}
		if st.Pending == len(sums) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server does not report the %d files queued: %s", len(sums), st)
		}
	}
	if err := syscall.Kill(rec.Server.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testenv.MustBeGone(t, rec.Server)
	if got, err := s3.ReadObject(t, "cached-static", "ckpt/model.bin"); err == nil {
		t.Fatalf("uploaded before the test acted (%d bytes)", len(got))
	}
	mount := map[string]string{"source": "s3://cached-static", "mode": "MOUNT"}
	start := time.Now()
	retries := 0
	for {
		err := stageVol(t, c, id, staging, testenv.MountCap(rwx), mount, s3.Secrets())
		if err == nil {
			break
		}
		if code := status.Code(err); (code != codes.Unavailable && code != codes.DeadlineExceeded) || time.Since(start) > 3*time.Minute {
			t.Fatalf("NodeStage in MOUNT over a dead MOUNT_CACHED stage: %v", err)
		}
		retries++
	}
	assertInBucket(t, s3, "cached-static", sums)
	if now := stagedRecord(t, drv, id); now.Mode != "MOUNT" || !now.Server.Alive() {
		t.Fatalf("not restaged in MOUNT: %+v", now)
	}
	t.Logf("flushed and restaged in %v (%d retryable answers)", time.Since(start).Round(time.Millisecond), retries)
	unpublish(t, c, id, staging, target)
}

// TestStaticPVWithDeletedDynamicHandle: a static PV reusing a dynamic
// volume's handle stages while that volume exists (it shares its record)
// and is refused with FailedPrecondition once the volume is deleted,
// whether its bucket was kept or purged; a `name` volume on a bucket the
// driver did not create (which keeps no record) still stages.
func TestStaticPVWithDeletedDynamicHandle(t *testing.T) {
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t)
	ctx := context.Background()
	for _, params := range []map[string]string{{"name": "kept-data"}, {"name": "scratch-data", "persistent": "false"}} {
		v, err := c.Controller.CreateVolume(ctx, createReq("pvc-dyn-"+params["name"], params, s3.Secrets()))
		if err != nil {
			t.Fatal(err)
		}
		id := v.GetVolume().GetVolumeId()
		staging := filepath.Join(drv.TempDir(t), "staging")
		static := map[string]string{"name": params["name"]} // what the admin's PV carries
		if err := stageVol(t, c, id, staging, testenv.MountCap(rwx), static, s3.Secrets()); err != nil {
			t.Fatalf("static PV with the handle of a live volume: %v", err)
		}
		if _, err := c.Node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Controller.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id, Secrets: s3.Secrets()}); err != nil {
			t.Fatal(err)
		}
		err = stageVol(t, c, id, staging, testenv.MountCap(rwx), static, s3.Secrets())
		wantStatus(t, "static PV with a deleted volume's handle ("+params["name"]+")", err, codes.FailedPrecondition, "was deleted", "source")
		if left := drv.Staged(t); len(left) != 0 {
			t.Fatalf("a refused stage left state: %+v", left)
		}
	}
	if err := s3.Store(t).CreateBucket(ctx, "theirs"); err != nil {
		t.Fatal(err)
	}
	if err := s3.Store(t).PutObject(ctx, "theirs", "precious.txt", []byte("theirs")); err != nil {
		t.Fatal(err)
	}
	v, err := c.Controller.CreateVolume(ctx, createReq("pvc-theirs", map[string]string{"name": "theirs"}, s3.Secrets()))
	if err != nil {
		t.Fatal(err)
	}
	staging := filepath.Join(drv.TempDir(t), "staging")
	if err := stageVol(t, c, v.GetVolume().GetVolumeId(), staging, testenv.MountCap(rwx), nil, s3.Secrets()); err != nil {
		t.Fatalf("a name volume on a bucket without records: %v", err)
	}
	if _, err := c.Node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: v.GetVolume().GetVolumeId(), StagingTargetPath: staging}); err != nil {
		t.Fatal(err)
	}
}
