package driver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/mountpoint"
	"github.com/bucket-csi/bucket-csi/pkg/nodestate"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// TestInlineVolumesPerNamespace: with a cap of 2, a namespace's third
// inline volume on the node answers ResourceExhausted naming the
// namespace and the flag, with an event on the pod and no record left;
// another namespace is not affected; a second target of an admitted
// volume is not refused; an unpublish frees the place; the count
// survives a restart of the plugin (it is read from the node's records);
// a cap of 0 admits any number.
func TestInlineVolumesPerNamespace(t *testing.T) {
	ctx := context.Background()
	log := &eventLog{}
	e := newEnv(t, func(c *Config) { c.Inline.PerNamespace, c.Events = 2, log })
	e.bucket("data")
	publish := func(d *Driver, id, ns, target string) error {
		req := publishReq(id, "", e.path(target), rwx())
		req.VolumeContext = map[string]string{volume.KeySource: "s3://data", volume.KeyEphemeral: "true",
			volume.KeyPodNamespace: ns, volume.KeyPodName: "p-" + id, volume.KeyPodUID: "u-" + id}
		req.Secrets = map[string]string{secretKey: ambientKey}
		_, err := d.NodePublishVolume(ctx, req)
		return err
	}
	for _, id := range []string{"csi-a1", "csi-a2"} {
		wantCode(t, "publish "+id, publish(e.d, id, "a", id), codes.OK)
	}
	err := publish(e.d, "csi-a3", "a", "csi-a3")
	wantCode(t, "the namespace's third inline volume", err, codes.ResourceExhausted)
	if msg := err.Error(); !strings.Contains(msg, `namespace "a" already has 2 inline volumes`) || !strings.Contains(msg, "--inline-volumes-per-namespace") {
		t.Fatalf("refusal %q does not name the namespace, its count and the flag", msg)
	}
	onPod := 0
	for i, ref := range log.refs {
		if log.reasons[i] == ReasonInlineRefused && ref.Kind == "Pod" && ref.Name == "p-csi-a3" {
			onPod++
		}
	}
	if onPod != 1 {
		t.Fatalf("events %v about %v, want one %s on the pod", log.reasons, log.refs, ReasonInlineRefused)
	}
	if rec, _ := e.cfg.State.Load("csi-a3"); rec != nil {
		t.Fatalf("a refused inline volume left a record: %+v", rec)
	}
	wantCode(t, "another namespace's inline volume", publish(e.d, "csi-b1", "b", "csi-b1"), codes.OK)
	wantCode(t, "a second target of an admitted volume", publish(e.d, "csi-a1", "a", "csi-a1-second"), codes.OK)

	restarted := New(e.cfg)
	wantCode(t, "the third inline volume after a restart", publish(restarted, "csi-a3", "a", "csi-a3"), codes.ResourceExhausted)
	_, err = restarted.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "csi-a2", TargetPath: e.path("csi-a2")})
	wantCode(t, "unpublish", err, codes.OK)
	wantCode(t, "the third inline volume once one is unpublished", publish(restarted, "csi-a3", "a", "csi-a3"), codes.OK)
	if rec, _ := e.cfg.State.Load("csi-a3"); rec == nil || rec.Namespace != "a" {
		t.Fatalf("record %+v, want it to name namespace a", rec)
	}

	e.cfg.Inline.PerNamespace = 0
	uncapped := New(e.cfg)
	wantCode(t, "a fourth inline volume without a cap", publish(uncapped, "csi-a4", "a", "csi-a4"), codes.OK)
}

// TestAdmitInlineCountsStagesInFlight: an admitted volume whose stage has
// not returned (its record may not be saved yet) holds its namespace's
// place until done, so two publishes racing for the last place cannot
// both take it.
func TestAdmitInlineCountsStagesInFlight(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Inline.PerNamespace = 1 })
	done, err := e.d.admitInline("csi-1", "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.admitInline("csi-2", "a"); !errors.Is(err, fault.Exhausted) {
		t.Fatalf("a second volume beside one in flight: %v, want fault.Exhausted", err)
	}
	if other, err := e.d.admitInline("csi-3", "b"); err != nil {
		t.Fatalf("another namespace: %v", err)
	} else {
		other()
	}
	done()
	next, err := e.d.admitInline("csi-2", "a")
	if err != nil {
		t.Fatalf("once the first is done (and left no record): %v", err)
	}
	next()
}

// TestFailedInlinePublishLeavesNothing: kubelet sends no
// NodeUnpublishVolume after a publish that answered a final code, so an
// inline volume's failed publish removes what it staged (else a pod with
// a wrong Secret would hold a FUSE server and its namespace's place for
// ever, and the cap would lock the namespace out); a non-final answer
// keeps the stage for kubelet's retry or unpublish; a stage that cannot
// be removed answers Unavailable, which kubelet follows with an unpublish.
func TestFailedInlinePublishLeavesNothing(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name       string
		breakIt    func(e *env)
		want       codes.Code
		keepRecord bool
	}{
		{"stage denied (final)", func(e *env) { e.stagers[volume.ModeMountCached].stageErr = fault.Denied }, codes.PermissionDenied, false},
		{"bind failed (final)", func(e *env) { e.mounts.bindErr = errors.New("bind: no such device") }, codes.Internal, false},
		{"stage pending (retried)", func(e *env) { e.stagers[volume.ModeMountCached].stageErr = fault.Pending }, codes.Unavailable, true},
		{"stage denied, removal failed", func(e *env) {
			e.stagers[volume.ModeMountCached].stageErr = fault.Denied
			e.stagers[volume.ModeMountCached].unstageErr = fault.Pending
		}, codes.Unavailable, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) {
				c.Inline.Modes, c.Inline.PerNamespace = []volume.Mode{volume.ModeMountCached}, 1
			})
			e.bucket("data")
			req := func(id string) *csi.NodePublishVolumeRequest {
				r := publishReq(id, "", e.path(id), rwx())
				r.VolumeContext = map[string]string{volume.KeySource: "s3://data", volume.KeyMode: string(volume.ModeMountCached),
					volume.KeyEphemeral: "true", volume.KeyPodNamespace: "a", volume.KeyPodName: "p", volume.KeyPodUID: "u"}
				r.Secrets = map[string]string{secretKey: ambientKey}
				return r
			}
			tc.breakIt(e)
			_, err := e.d.NodePublishVolume(ctx, req("csi-broken"))
			wantCode(t, "the broken publish", err, tc.want)
			rec, _ := e.cfg.State.Load("csi-broken")
			if (rec != nil) != tc.keepRecord {
				t.Fatalf("record after the failed publish: %+v, want kept %v", rec, tc.keepRecord)
			}
			if !tc.keepRecord && e.mounts.has(e.cfg.State.VolumeDir("csi-broken")+"/mnt") {
				t.Fatal("the failed inline volume's stage is still mounted")
			}
			e.stagers[volume.ModeMountCached].stageErr, e.stagers[volume.ModeMountCached].unstageErr, e.mounts.bindErr = nil, nil, nil
			want := codes.OK
			if tc.keepRecord {
				want = codes.ResourceExhausted // it holds the namespace's one place until unpublished
			}
			_, err = e.d.NodePublishVolume(ctx, req("csi-next"))
			wantCode(t, "the namespace's next inline volume", err, want)
		})
	}
}

// TestInlineCapNeedsThePodNamespace: with the cap on, an inline volume
// whose request names no pod namespace (a CSIDriver without
// podInfoOnMount) is refused with FailedPrecondition saying so, rather
// than counted in one pool shared by every namespace.
func TestInlineCapNeedsThePodNamespace(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Inline.PerNamespace = 4 })
	e.bucket("data")
	req := publishReq("csi-no-ns", "", e.path("target"), rwx())
	req.VolumeContext = map[string]string{volume.KeySource: "s3://data", volume.KeyEphemeral: "true"}
	req.Secrets = map[string]string{secretKey: ambientKey}
	_, err := e.d.NodePublishVolume(context.Background(), req)
	wantCode(t, "an inline volume without a pod namespace", err, codes.FailedPrecondition)
	if !strings.Contains(err.Error(), "podInfoOnMount") {
		t.Fatalf("refusal %q does not say what to set", err)
	}
}

// TestFailedInlinePublishKeepsWhatIsUsed: the removal after a final answer
// touches only a stage no pod uses. A repeat publish of a published inline
// volume with another secret answers AlreadyExists and leaves the record,
// the stage and the pod's mount; a record that is not an inline volume's
// is left; a bind left at the target by a publish cut off before its
// record was saved is removed with the stage; a record that cannot be
// read answers Unavailable, so that kubelet unpublishes.
func TestFailedInlinePublishKeepsWhatIsUsed(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.bucket("data")
	req := func(id, target string, secrets map[string]string) *csi.NodePublishVolumeRequest {
		r := publishReq(id, "", e.path(target), rwx())
		r.VolumeContext = map[string]string{volume.KeySource: "s3://data", volume.KeyEphemeral: "true",
			volume.KeyPodNamespace: "a", volume.KeyPodName: "p", volume.KeyPodUID: "u"}
		r.Secrets = secrets
		return r
	}
	creds := map[string]string{secretKey: ambientKey}
	used := req("csi-used", "used", creds)
	_, err := e.d.NodePublishVolume(ctx, used)
	wantCode(t, "publish", err, codes.OK)
	_, err = e.d.NodePublishVolume(ctx, req("csi-used", "used", map[string]string{secretKey: "rotated"}))
	wantCode(t, "a repeat with another secret", err, codes.AlreadyExists)
	if rec, _ := e.cfg.State.Load("csi-used"); rec == nil || !e.mounts.has(rec.StagingPath) || !e.mounts.has(used.TargetPath) {
		t.Fatalf("after a refused repeat: record %+v, want the stage and the pod's mount kept", rec)
	}

	// Not an inline volume's record: left as it is.
	if err := e.cfg.State.Save(&nodestate.Volume{VolumeID: "csi-pv", Mode: volume.ModeMount, StagingPath: e.path("pv-staging")}); err != nil {
		t.Fatal(err)
	}
	notAllowed := req("csi-pv", "pv-target", creds)
	notAllowed.VolumeContext[volume.KeyMode] = string(volume.ModeCopy)
	_, err = e.d.NodePublishVolume(ctx, notAllowed)
	wantCode(t, "a refused publish over a PV's record", err, codes.PermissionDenied)
	if rec, _ := e.cfg.State.Load("csi-pv"); rec == nil {
		t.Fatal("a refused inline publish removed a record that is not an inline volume's")
	}

	// Cut off after its bind, before its record named the target; then
	// refused (the store is no longer allowed). A FUSE stage, and one of
	// a plain filesystem as COPY's bind of the copy is.
	cfg := e.cfg
	cfg.Inline.Stores = nil
	refusing := New(cfg)
	for _, copyLike := range []bool{false, true} {
		e.stagers[volume.ModeMount].copyLike = copyLike
		id := fmt.Sprintf("csi-cut-%v", copyLike)
		cut := req(id, id, creds)
		_, err = e.d.NodePublishVolume(ctx, cut)
		wantCode(t, "publish", err, codes.OK)
		rec, _ := e.cfg.State.Load(id)
		rec.Targets = nil
		if err := e.cfg.State.Save(rec); err != nil {
			t.Fatal(err)
		}
		_, err = refusing.NodePublishVolume(ctx, cut)
		wantCode(t, "the retry, refused", err, codes.PermissionDenied)
		if rec, _ := e.cfg.State.Load(id); rec != nil || e.mounts.has(cut.TargetPath) || e.mounts.has(inlineStaging(e, id)) {
			t.Fatalf("after a final answer (copy-like %v): record %+v, target mounted %v; want neither", copyLike, rec, e.mounts.has(cut.TargetPath))
		}
	}
	e.stagers[volume.ModeMount].copyLike = false

	// A mount at the target that is not the stage's bind: the stage is
	// kept for kubelet's unpublish, which detaches the target.
	foreign := req("csi-foreign", "foreign", creds)
	_, err = e.d.NodePublishVolume(ctx, foreign)
	wantCode(t, "publish", err, codes.OK)
	rec, _ := e.cfg.State.Load("csi-foreign")
	rec.Targets = nil
	if err := e.cfg.State.Save(rec); err != nil {
		t.Fatal(err)
	}
	e.mounts.mount(foreign.TargetPath, mountpoint.Info{FSType: "ext4", Major: 8, Minor: 2, Root: "/home"})
	_, err = refusing.NodePublishVolume(ctx, foreign)
	wantCode(t, "a refused publish with a foreign mount at the target", err, codes.Unavailable)
	if rec, _ := e.cfg.State.Load("csi-foreign"); rec == nil || !e.mounts.has(inlineStaging(e, "csi-foreign")) {
		t.Fatalf("the stage was removed with a foreign mount left at the target: record %+v", rec)
	}

	// A record that cannot be read.
	dir, err := e.cfg.State.Ensure("csi-garbled")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "state.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = e.d.NodePublishVolume(ctx, req("csi-garbled", "garbled", creds))
	wantCode(t, "a publish over a record that cannot be read", err, codes.Unavailable)
}

// inlineStaging is the staging path of inline volume id (its private mount).
func inlineStaging(e *env, id string) string {
	return filepath.Join(e.cfg.State.VolumeDir(id), "mnt")
}
