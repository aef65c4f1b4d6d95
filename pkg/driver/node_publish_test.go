package driver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/mountpoint"
	"github.com/bucket-csi/bucket-csi/pkg/stage"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

func publishReq(id, staging, target string, vc *csi.VolumeCapability) *csi.NodePublishVolumeRequest {
	return &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: target, VolumeCapability: vc}
}

// TestNodePublishVolume checks NodePublishVolume's answers for a staged
// volume: required fields, a volume not staged, repeats (same target and
// capability OK; another capability AlreadyExists), the single-writer
// rule, foreign mounts, a failed bind, and a dead server.
func TestNodePublishVolume(t *testing.T) {
	sw := func() *csi.VolumeCapability {
		return mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER)
	}
	for _, tc := range []struct {
		name string
		mode volume.Mode
		// setup runs after the volume is staged; first, when set, is
		// published before the request under test.
		setup func(e *env, id string)
		first func(e *env, id string) *csi.NodePublishVolumeRequest
		req   func(e *env, id string) *csi.NodePublishVolumeRequest
		want  codes.Code
		binds int
	}{
		{name: "no volume ID", req: func(e *env, _ string) *csi.NodePublishVolumeRequest {
			return publishReq("", e.path("staging"), e.path("target"), rwx())
		}, want: codes.InvalidArgument},
		{name: "no target path", req: func(e *env, id string) *csi.NodePublishVolumeRequest {
			return publishReq(id, e.path("staging"), "", rwx())
		}, want: codes.InvalidArgument},
		{name: "no capability", req: func(e *env, id string) *csi.NodePublishVolumeRequest {
			return publishReq(id, e.path("staging"), e.path("target"), nil)
		}, want: codes.InvalidArgument},
		{name: "relative target path", req: func(e *env, id string) *csi.NodePublishVolumeRequest {
			return publishReq(id, e.path("staging"), "pods/x", rwx())
		}, want: codes.InvalidArgument},
		{name: "block", req: func(e *env, id string) *csi.NodePublishVolumeRequest {
			return publishReq(id, e.path("staging"), e.path("target"), blockCap())
		}, want: codes.InvalidArgument},
		{name: "not staged there", req: func(e *env, id string) *csi.NodePublishVolumeRequest {
			return publishReq(id, e.path("elsewhere"), e.path("target"), rwx())
		}, want: codes.FailedPrecondition},
		{name: "published", want: codes.OK, binds: 1},
		{name: "repeat", first: func(e *env, id string) *csi.NodePublishVolumeRequest {
			return publishReq(id, e.path("staging"), e.path("target"), rwx())
		}, want: codes.OK, binds: 1},
		{name: "repeat read-only", first: func(e *env, id string) *csi.NodePublishVolumeRequest {
			r := publishReq(id, e.path("staging"), e.path("target"), rwx())
			r.Readonly = true
			return r
		}, want: codes.AlreadyExists, binds: 1},
		{name: "repeat single-writer", first: func(e *env, id string) *csi.NodePublishVolumeRequest {
			return publishReq(id, e.path("staging"), e.path("target"), sw())
		}, want: codes.AlreadyExists, binds: 1},
		{name: "second target of a single-writer volume", first: func(e *env, id string) *csi.NodePublishVolumeRequest {
			return publishReq(id, e.path("staging"), e.path("target0"), sw())
		}, want: codes.FailedPrecondition, binds: 1},
		{name: "second target of a shared volume", first: func(e *env, id string) *csi.NodePublishVolumeRequest {
			return publishReq(id, e.path("staging"), e.path("target0"), rwx())
		}, want: codes.OK, binds: 2},
		{name: "another filesystem at the target", setup: func(e *env, _ string) {
			e.mounts.mount(e.path("target"), mountpoint.Info{FSType: "ext4"})
		}, want: codes.FailedPrecondition},
		{name: "own bind left by a crash", setup: func(e *env, _ string) {
			e.mounts.mount(e.path("target"), mountpoint.Info{FSType: fuseType})
		}, want: codes.OK, binds: 1},
		{name: "own bind of a COPY stage left by a crash", setup: func(e *env, _ string) {
			copyMount := mountpoint.Info{FSType: "ext4", Major: 8, Minor: 1, Root: "/copies/v"}
			e.mounts.mount(e.path("staging"), copyMount)
			e.mounts.mount(e.path("target"), copyMount)
		}, want: codes.OK, binds: 1},
		{name: "a bind of another directory of the COPY stage's disk", setup: func(e *env, _ string) {
			e.mounts.mount(e.path("staging"), mountpoint.Info{FSType: "ext4", Major: 8, Minor: 1, Root: "/copies/v"})
			e.mounts.mount(e.path("target"), mountpoint.Info{FSType: "ext4", Major: 8, Minor: 1, Root: "/home"})
		}, want: codes.FailedPrecondition},
		{name: "another overlay (device) at the target of a COPY stage", setup: func(e *env, _ string) {
			e.mounts.mount(e.path("staging"), mountpoint.Info{FSType: "overlay", Major: 0, Minor: 40, Root: "/"})
			e.mounts.mount(e.path("target"), mountpoint.Info{FSType: "overlay", Major: 0, Minor: 41, Root: "/"})
		}, want: codes.FailedPrecondition},
		{name: "another filesystem type with the COPY stage's device and root", setup: func(e *env, _ string) {
			e.mounts.mount(e.path("staging"), mountpoint.Info{FSType: "ext4", Major: 8, Minor: 1, Root: "/copies/v"})
			e.mounts.mount(e.path("target"), mountpoint.Info{FSType: "xfs", Major: 8, Minor: 1, Root: "/copies/v"})
		}, want: codes.FailedPrecondition},
		{name: "bind fails", setup: func(e *env, _ string) {
			e.mounts.bindErr = fmt.Errorf("%w: bind-mounting: permission denied", fault.Unavailable)
		}, want: codes.Unavailable},
		{name: "dead server restarted", setup: func(e *env, id string) { e.stagers[volume.ModeMount].kill(id) }, want: codes.OK, binds: 1},
		{name: "dead server that cannot be restarted", mode: volume.ModeMountCached,
			setup: func(e *env, id string) { e.stagers[volume.ModeMountCached].kill(id) }, want: codes.FailedPrecondition},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t)
			e.bucket("data")
			mode := tc.mode
			if mode == "" {
				mode = volume.ModeMount
			}
			id := e.sourceID("data", mode)
			e.stage(id, e.path("staging"))
			if tc.setup != nil {
				tc.setup(e, id)
			}
			if tc.first != nil {
				_, err := e.d.NodePublishVolume(ctx, tc.first(e, id))
				wantCode(t, "first NodePublishVolume", err, codes.OK)
			}
			req := publishReq(id, e.path("staging"), e.path("target"), rwx())
			if tc.req != nil {
				req = tc.req(e, id)
			}
			_, err := e.d.NodePublishVolume(ctx, req)
			wantCode(t, "NodePublishVolume", err, tc.want)
			if e.mounts.binds != tc.binds {
				t.Fatalf("%d bind mounts made, want %d", e.mounts.binds, tc.binds)
			}
			if err != nil {
				return
			}
			rec, _ := e.cfg.State.Load(id)
			if rec == nil || !e.mounts.has(req.GetTargetPath()) || len(rec.Targets) != tc.binds {
				t.Fatalf("after publish: record %+v, target mounted %v; want %d targets", rec, e.mounts.has(req.GetTargetPath()), tc.binds)
			}
		})
	}
}

// TestNodeUnpublishVolume: required fields; an unknown target and a repeat
// answer OK; the bind and the target directory are gone, the stage stays.
func TestNodeUnpublishVolume(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.bucket("data")
	id := e.sourceID("data", volume.ModeMount)
	e.stage(id, e.path("staging"))
	_, err := e.d.NodePublishVolume(ctx, publishReq(id, e.path("staging"), e.path("target"), rwx()))
	wantCode(t, "NodePublishVolume", err, codes.OK)
	for _, tc := range []struct {
		name       string
		id, target string
		want       codes.Code
	}{
		{name: "no volume ID", target: e.path("target"), want: codes.InvalidArgument},
		{name: "no target path", id: id, want: codes.InvalidArgument},
		{name: "unclean target path", id: id, target: e.path("target") + "/..", want: codes.InvalidArgument},
		{name: "unknown target", id: id, target: e.path("never"), want: codes.OK},
		{name: "unknown volume", id: "no-such-volume", target: e.path("never"), want: codes.OK},
		{name: "published", id: id, target: e.path("target"), want: codes.OK},
		{name: "repeat", id: id, target: e.path("target"), want: codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.d.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: tc.id, TargetPath: tc.target})
			wantCode(t, "NodeUnpublishVolume", err, tc.want)
		})
	}
	if e.mounts.has(e.path("target")) {
		t.Fatal("the target is still mounted")
	}
	if _, err := os.Stat(e.path("target")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the target directory is still there: %v", err)
	}
	if rec, _ := e.cfg.State.Load(id); rec == nil || len(rec.Targets) != 0 || !e.mounts.has(e.path("staging")) {
		t.Fatalf("after unpublish: record %+v; want the stage kept with no targets", rec)
	}
}

// TestNodePublishInline: an inline ephemeral volume (no staging path) is
// checked against the inline policy, staged privately, and unstaged by
// its last unpublish.
func TestNodePublishInline(t *testing.T) {
	creds := map[string]string{secretKey: ambientKey}
	for _, tc := range []struct {
		name    string
		policy  InlinePolicy
		attrs   map[string]string
		secrets map[string]string
		want    codes.Code
	}{
		{name: "store not allowed", policy: InlinePolicy{}, attrs: map[string]string{volume.KeySource: "s3://data"}, secrets: creds, want: codes.PermissionDenied},
		{name: "no source", policy: InlinePolicy{Stores: []string{"s3"}}, attrs: map[string]string{volume.KeyName: "data"}, secrets: creds, want: codes.InvalidArgument},
		{name: "mode not allowed", policy: InlinePolicy{Stores: []string{"s3"}},
			attrs: map[string]string{volume.KeySource: "s3://data", volume.KeyMode: string(volume.ModeMountCached)}, secrets: creds, want: codes.PermissionDenied},
		{name: "no credentials", policy: InlinePolicy{Stores: []string{"s3"}}, attrs: map[string]string{volume.KeySource: "s3://data"}, want: codes.PermissionDenied},
		{name: "ambient credentials allowed", policy: InlinePolicy{Stores: []string{"s3"}, AmbientCredentials: true}, attrs: map[string]string{volume.KeySource: "s3://data"}, want: codes.OK},
		{name: "allowed", policy: InlinePolicy{Stores: []string{"s3"}}, attrs: map[string]string{volume.KeySource: "s3://data"}, secrets: creds, want: codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, func(c *Config) { c.Inline = tc.policy })
			e.bucket("data")
			req := publishReq("csi-inline-1", "", e.path("target"), rwx())
			req.VolumeContext, req.Secrets = tc.attrs, tc.secrets
			_, err := e.d.NodePublishVolume(ctx, req)
			wantCode(t, "NodePublishVolume", err, tc.want)
			rec, _ := e.cfg.State.Load(req.VolumeId)
			if err != nil {
				if rec != nil {
					t.Fatalf("a refused inline volume left a record: %+v", rec)
				}
				return
			}
			if rec == nil || !rec.Ephemeral || !e.mounts.has(rec.StagingPath) || !e.mounts.has(req.TargetPath) {
				t.Fatalf("after an inline publish: record %+v", rec)
			}
			_, err = e.d.NodePublishVolume(ctx, req)
			wantCode(t, "repeated NodePublishVolume", err, codes.OK)
			_, err = e.d.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: req.VolumeId, TargetPath: req.TargetPath})
			wantCode(t, "NodeUnpublishVolume", err, codes.OK)
			if rec, _ := e.cfg.State.Load(req.VolumeId); rec != nil || e.mounts.has(e.cfg.State.VolumeDir(req.VolumeId)+"/mnt") {
				t.Fatalf("after the last unpublish of an inline volume: record %+v, want it unstaged", rec)
			}
		})
	}
}

// TestNodeGetVolumeStats: required fields, a path with no volume
// (NotFound), figures from statfs, and a FUSE server that does not answer
// (Unavailable, with one statfs in flight per path).
func TestNodeGetVolumeStats(t *testing.T) {
	hung := make(chan struct{})
	defer close(hung)
	e := newEnv(t, func(c *Config) {
		c.Statfs = func(path string, st *unix.Statfs_t) error {
			if path == "/hung" {
				<-hung
			}
			st.Bsize, st.Blocks, st.Bfree, st.Bavail, st.Files, st.Ffree = 4096, 100, 40, 30, 50, 20
			return nil
		}
	})
	e.mounts.mount(e.path("target"), mountpoint.Info{FSType: fuseType})
	e.mounts.mount("/hung", mountpoint.Info{FSType: fuseType})
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name, id, path string
		ctx            context.Context
		want           codes.Code
	}{
		{name: "no volume ID", path: e.path("target"), want: codes.InvalidArgument},
		{name: "no path", id: "v", want: codes.InvalidArgument},
		{name: "nothing mounted", id: "v", path: e.path("none"), want: codes.NotFound},
		{name: "mounted", id: "v", path: e.path("target"), want: codes.OK},
		{name: "server hangs, caller gives up", id: "v", path: "/hung", ctx: gone, want: codes.Canceled},
		{name: "server still hangs", id: "v", path: "/hung", want: codes.Unavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := tc.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			resp, err := e.d.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: tc.id, VolumePath: tc.path})
			wantCode(t, "NodeGetVolumeStats", err, tc.want)
			if err != nil {
				return
			}
			b := resp.GetUsage()[0]
			if b.GetTotal() != 409600 || b.GetAvailable() != 122880 || b.GetUsed() != 245760 {
				t.Fatalf("bytes usage %+v, want total 409600, available 122880, used 245760", b)
			}
		})
	}
}

// TestNodeGetVolumeHealth: required ID, a volume not staged here
// (NotFound), a healthy stage (no condition), what the stager's Check
// finds (DEGRADED or INACCESSIBLE), and a server that is gone
// (INACCESSIBLE, without asking Check).
func TestNodeGetVolumeHealth(t *testing.T) {
	e := newEnv(t)
	e.bucket("data")
	id := e.sourceID("data", volume.ModeMount)
	e.stage(id, e.path("staging"))
	for _, tc := range []struct {
		name, id string
		kill     bool
		// found is what the stager's Check finds.
		found    []stage.Condition
		want     codes.Code
		statuses []csi.VolumeHealthErrorType
	}{
		{name: "no volume ID", want: codes.InvalidArgument},
		{name: "not staged", id: "no-such-volume", want: codes.NotFound},
		{name: "healthy", id: id, want: codes.OK},
		{name: "uploads failing", id: id, found: []stage.Condition{{Reason: "UploadsFailing", Message: "2 files pending"}},
			want: codes.OK, statuses: []csi.VolumeHealthErrorType{csi.VolumeHealthErrorType_DEGRADED}},
		{name: "server not answering", id: id, found: []stage.Condition{{Inaccessible: true, Reason: "ServerNotAnswering"}},
			want: codes.OK, statuses: []csi.VolumeHealthErrorType{csi.VolumeHealthErrorType_INACCESSIBLE}},
		{name: "server gone", id: id, kill: true, found: []stage.Condition{{Reason: "UploadsFailing"}}, want: codes.OK,
			statuses: []csi.VolumeHealthErrorType{csi.VolumeHealthErrorType_INACCESSIBLE}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := e.stagers[volume.ModeMount]
			s.mu.Lock()
			s.conditions = tc.found
			s.mu.Unlock()
			if tc.kill {
				s.kill(id)
			}
			resp, err := e.d.NodeGetVolumeHealth(context.Background(), &csi.NodeGetVolumeHealthRequest{VolumeId: tc.id})
			wantCode(t, "NodeGetVolumeHealth", err, tc.want)
			var got []csi.VolumeHealthErrorType
			for _, s := range resp.GetVolumeHealth().GetHealthStatuses() {
				got = append(got, s.GetStatus())
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.statuses) {
				t.Fatalf("health statuses %v, want %v", got, tc.statuses)
			}
		})
	}
}

// TestInlineVolumeNamesNoPV: an inline volume whose attributes (the pod
// author's) carry a PV name aims no event at that PV, refused or staged,
// and its record names no PV (the metrics' pv label); also without the
// ephemeral key kubelet adds (a CSIDriver without podInfoOnMount).
func TestInlineVolumeNamesNoPV(t *testing.T) {
	for _, tc := range []struct {
		name      string
		policy    InlinePolicy
		ephemeral string
		want      codes.Code
	}{
		{"refused", InlinePolicy{}, "true", codes.PermissionDenied},
		{"staged", InlinePolicy{Stores: []string{"s3"}}, "true", codes.OK},
		{"refused, no ephemeral key", InlinePolicy{}, "", codes.PermissionDenied},
		{"staged, no ephemeral key", InlinePolicy{Stores: []string{"s3"}}, "", codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := &eventLog{}
			e := newEnv(t, func(c *Config) { c.Inline, c.Events = tc.policy, log })
			e.bucket("data")
			req := publishReq("csi-inline-pv", "", e.path("target"), rwx())
			req.VolumeContext = map[string]string{volume.KeySource: "s3://data",
				volume.KeyPVName: "victim-pv", volume.KeyPodNamespace: "attacker", volume.KeyPodName: "p", volume.KeyPodUID: "u1"}
			if tc.ephemeral != "" {
				req.VolumeContext[volume.KeyEphemeral] = tc.ephemeral
			}
			req.Secrets = map[string]string{secretKey: ambientKey}
			_, err := e.d.NodePublishVolume(context.Background(), req)
			wantCode(t, "NodePublishVolume", err, tc.want)
			if len(log.reasons) == 0 && tc.want != codes.OK {
				t.Fatal("a refused inline volume told no event")
			}
			for i, ref := range log.refs {
				if ref.Kind == "PersistentVolume" || ref.Name == "victim-pv" {
					t.Fatalf("event %s about %+v: an inline volume's pv/name attribute was trusted", log.reasons[i], ref)
				}
			}
			if rec, _ := e.cfg.State.Load(req.VolumeId); rec != nil && rec.PV != "" {
				t.Fatalf("the inline volume's record names PV %q", rec.PV)
			}
		})
	}
}
