package test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"

	"github.com/bucket-csi/bucket-csi/internal/fakeapi"
	"github.com/bucket-csi/bucket-csi/pkg/store/s3store"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// waitEvent waits for an event with reason about the object kind/name.
func waitEvent(t *testing.T, api *fakeapi.Server, kind, name, reason string) corev1.Event {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		for _, e := range api.Events() {
			if e.InvolvedObject.Kind == kind && e.InvolvedObject.Name == name && e.Reason == reason {
				return e
			}
		}
		if time.Now().After(deadline) {
			var seen []string
			for _, e := range api.Events() {
				seen = append(seen, e.InvolvedObject.Kind+"/"+e.InvolvedObject.Name+" "+e.Reason+": "+e.Message)
			}
			t.Fatalf("no %s event on %s %s; events: %q", reason, kind, name, seen)
		}
	}
}

// TestEvents runs the real driver against a fake API server (its
// --kubeconfig) and checks the events users see in `kubectl describe`:
// COPY done on the PV (with the PV's UID) and on the pod (with the pod's
// UID), uploads pending and then flushed on a MOUNT_CACHED PV, a dead FUSE
// server restarted on the pod, an inline volume refused and why on the
// pod, credentials refused on the PV; and never a secret in any of them.
func TestEvents(t *testing.T) {
	testenv.RequireFUSE(t)
	api := fakeapi.Start()
	t.Cleanup(api.Close)
	s3 := testenv.StartS3(t)
	kubeconfig, err := api.Kubeconfig(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	drv := testenv.StartDriver(t, s3, "--kubeconfig", kubeconfig, "--write-back", "30s", "--inline-stores", "s3")
	c := drv.Dial(t)
	ctx := context.Background()

	// COPY: started on the PV and on the pod of this node waiting for its
	// claim (not on a pod elsewhere), done on the PV, and on the pod that
	// publishes it.
	fillSource(t, s3, "events-copy-src", 9)
	copyPV := "pvc-events-copy"
	api.AddPV(copyPV, "uid-copy-pv", "team-a", "data-copy")
	api.AddPod("team-a", "reader-0", "uid-reader-0", "local-node", "data-copy", corev1.PodPending)
	api.AddPod("team-a", "reader-far", "uid-reader-far", "other-node", "data-copy", corev1.PodPending)
	kv := createPV(t, c, s3, copyPV, map[string]string{"source": "s3://events-copy-src", "mode": "COPY"})
	kstaging, _ := podPaths(t, drv)
	if err := os.MkdirAll(kstaging, 0o750); err != nil {
		t.Fatal(err)
	}
	// A deadline within the stage's margin: the call answers at once
	// while the copy starts.
	sctx, cancel := context.WithTimeout(ctx, 4*time.Second)
	_, err = c.Node.NodeStageVolume(sctx, &csi.NodeStageVolumeRequest{VolumeId: kv.id, StagingTargetPath: kstaging, VolumeCapability: testenv.MountCap(rwx), VolumeContext: kv.ctx, Secrets: s3.Secrets()})
	cancel()
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("first COPY stage = %v, want Unavailable while it copies", err)
	}
	waitEvent(t, api, "PersistentVolume", copyPV, "CopyStarted")
	if e := waitEvent(t, api, "Pod", "reader-0", "CopyStarted"); e.InvolvedObject.UID != "uid-reader-0" || !strings.Contains(e.Message, "events-copy-src") {
		t.Errorf("CopyStarted on the waiting pod: %+v", e)
	}
	stageWithContext(t, c, kv.id, kstaging, kv.ctx, s3.Secrets())
	e := waitEvent(t, api, "PersistentVolume", copyPV, "CopyDone")
	if e.InvolvedObject.UID != "uid-copy-pv" || e.Type != corev1.EventTypeNormal || !strings.Contains(e.Message, "10 objects") {
		t.Errorf("CopyDone on the PV: %+v", e)
	}
	publishPod(t, c, drv, kv, kstaging, "reader-0")
	e = waitEvent(t, api, "Pod", "reader-0", "CopyDone")
	if e.InvolvedObject.UID != "uid-reader-0" || e.Namespace != "team-a" || !strings.Contains(e.Message, "events-copy-src") {
		t.Errorf("CopyDone on the pod: %+v", e)
	}

	// MOUNT_CACHED: an unstage that waits for uploads says so on the PV,
	// then that every file is in the bucket.
	cachedPV := "pvc-events-cached"
	cv, cstaging, ctarget := publishedPV(t, c, drv, s3, cachedPV, map[string]string{"mode": "MOUNT_CACHED"}, "writer-0")
	cid := cv.id

	// A dead FUSE server is restarted by the next publish; the pod hears.
	rec := drv.Staged(t)
	for _, r := range rec {
		if r.VolumeID == cid {
			_ = syscall.Kill(r.Server.Pid, syscall.SIGKILL)
			if !testenv.WaitGone(r.Server) {
				t.Fatal("the FUSE server did not die")
			}
		}
	}
	ctarget2 := publishPod(t, c, drv, cv, cstaging, "writer-1")
	if e := waitEvent(t, api, "Pod", "writer-1", "FUSEServerRestarted"); e.Type != corev1.EventTypeWarning {
		t.Errorf("FUSEServerRestarted: %+v", e)
	}
	waitEvent(t, api, "PersistentVolume", cachedPV, "FUSEServerRestarted")

	if err := os.WriteFile(filepath.Join(ctarget2, "out.bin"), randomBytes(t, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tg := range []string{ctarget, ctarget2} {
		if _, err := c.Node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: cid, TargetPath: tg}); err != nil {
			t.Fatal(err)
		}
	}
	s3.Stop() // the uploads cannot finish: the unstage must wait
	tctx, cancel := context.WithTimeout(ctx, 8*time.Second)
	_, err = c.Node.NodeUnstageVolume(tctx, &csi.NodeUnstageVolumeRequest{VolumeId: cid, StagingTargetPath: cstaging})
	cancel()
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("unstage with uploads pending = %v, want Unavailable", err)
	}
	e = waitEvent(t, api, "PersistentVolume", cachedPV, "UploadsPending")
	if e.Type != corev1.EventTypeWarning || !strings.Contains(e.Message, "1 files (1048576 bytes) pending upload") || !strings.Contains(e.Message, "waits for uploads") {
		t.Errorf("UploadsPending: %+v", e)
	}
	if err := s3.Restart(); err != nil {
		t.Fatal(err)
	}
	unstageUntilDone(t, c, cid, cstaging, 30*time.Second, 3*time.Minute)
	if e := waitEvent(t, api, "PersistentVolume", cachedPV, "UploadsFlushed"); !strings.Contains(e.Message, "every file is in the bucket") {
		t.Errorf("UploadsFlushed: %+v", e)
	}

	// An inline volume in a mode the node does not allow: refused, and why.
	_, itarget := podPaths(t, drv)
	if err := os.MkdirAll(filepath.Dir(itarget), 0o750); err != nil {
		t.Fatal(err)
	}
	_, err = c.Node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: "csi-inline-1", TargetPath: itarget, VolumeCapability: testenv.MountCap(rwx), Secrets: s3.Secrets(),
		VolumeContext: podContext("inline-0", "uid-inline-0", map[string]string{"source": "s3://events-copy-src", "mode": "COPY", volume.KeyEphemeral: "true"})})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("inline COPY publish = %v, want PermissionDenied", err)
	}
	if e := waitEvent(t, api, "Pod", "inline-0", "InlineVolumeRefused"); !strings.Contains(e.Message, "may not use mode COPY") || e.InvolvedObject.UID != "uid-inline-0" {
		t.Errorf("InlineVolumeRefused: %+v", e)
	}

	// Wrong credentials: refused on the PV, and the secret never shown.
	badPV := "pvc-events-bad"
	bv := createPV(t, c, s3, badPV, map[string]string{"mode": "MOUNT"})
	bad := s3.Secrets()
	const wrong = "wrong-secret-key-0123456789abcdef"
	bad[s3store.SecretSecretAccessKey] = wrong
	bstaging, _ := podPaths(t, drv)
	if err := os.MkdirAll(bstaging, 0o750); err != nil {
		t.Fatal(err)
	}
	_, err = c.Node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: bv.id, StagingTargetPath: bstaging, VolumeCapability: testenv.MountCap(rwx), VolumeContext: bv.ctx, Secrets: bad})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("stage with a wrong secret = %v, want PermissionDenied", err)
	}
	if e := waitEvent(t, api, "PersistentVolume", badPV, "CredentialsRefused"); e.Type != corev1.EventTypeWarning {
		t.Errorf("CredentialsRefused: %+v", e)
	}
	for _, e := range api.Events() {
		t.Logf("%s %s/%s %s: %s", e.Type, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message)
		if e.InvolvedObject.Name == "reader-far" {
			t.Errorf("a pod on another node got %s", e.Reason)
		}
		for _, secret := range []string{wrong, s3.SecretKey} {
			for _, form := range testenv.SecretForms(secret) {
				if strings.Contains(e.Message, form) {
					t.Errorf("event %s on %s shows a secret: %q", e.Reason, e.InvolvedObject.Name, e.Message)
				}
			}
		}
	}
}
