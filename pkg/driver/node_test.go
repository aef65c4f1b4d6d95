package driver

import (
	"context"
	"fmt"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/mountpoint"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

func stageReq(id, staging string, vc *csi.VolumeCapability) *csi.NodeStageVolumeRequest {
	return &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: vc}
}

// stage stages id at staging and fails the test unless it succeeds.
func (e *env) stage(id, staging string) {
	e.t.Helper()
	_, err := e.d.NodeStageVolume(context.Background(), stageReq(id, staging, rwx()))
	wantCode(e.t, "NodeStageVolume", err, codes.OK)
}

// TestNodeStageVolume checks each answer of a first NodeStageVolume.
func TestNodeStageVolume(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(e *env, id, staging string)
		req   func(e *env, id, staging string) *csi.NodeStageVolumeRequest
		want  codes.Code
	}{
		{name: "no volume ID", req: func(e *env, _, staging string) *csi.NodeStageVolumeRequest { return stageReq("", staging, rwx()) }, want: codes.InvalidArgument},
		{name: "no staging path", req: func(e *env, id, _ string) *csi.NodeStageVolumeRequest { return stageReq(id, "", rwx()) }, want: codes.InvalidArgument},
		{name: "no capability", req: func(e *env, id, staging string) *csi.NodeStageVolumeRequest { return stageReq(id, staging, nil) }, want: codes.InvalidArgument},
		{name: "relative staging path", req: func(e *env, id, _ string) *csi.NodeStageVolumeRequest { return stageReq(id, "stage/x", rwx()) }, want: codes.InvalidArgument},
		{name: "unclean staging path", req: func(e *env, id, staging string) *csi.NodeStageVolumeRequest {
			return stageReq(id, staging+"/../x", rwx())
		}, want: codes.InvalidArgument},
		{name: "block", req: func(e *env, id, staging string) *csi.NodeStageVolumeRequest { return stageReq(id, staging, blockCap()) }, want: codes.InvalidArgument},
		{name: "unknown mount flag", req: func(e *env, id, staging string) *csi.NodeStageVolumeRequest {
			return stageReq(id, staging, mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER, "no-such-flag"))
		}, want: codes.InvalidArgument},
		{name: "bad volume mount group", req: func(e *env, id, staging string) *csi.NodeStageVolumeRequest {
			vc := rwx()
			vc.GetMount().VolumeMountGroup = "staff"
			return stageReq(id, staging, vc)
		}, want: codes.InvalidArgument},
		{name: "unknown volume", req: func(e *env, _, staging string) *csi.NodeStageVolumeRequest {
			return stageReq("no-such-volume", staging, rwx())
		}, want: codes.NotFound},
		{name: "mode not served on this node", req: func(e *env, _, staging string) *csi.NodeStageVolumeRequest {
			return stageReq(e.sourceID("data", volume.ModeCopy), staging, rwx())
		}, want: codes.InvalidArgument},
		{name: "credentials refused", setup: func(e *env, _, _ string) {
			e.stagers[volume.ModeMount].stageErr = fmt.Errorf("%w: access denied", fault.Denied)
		}, want: codes.PermissionDenied},
		{name: "store unavailable", setup: func(e *env, _, _ string) {
			e.stagers[volume.ModeMount].stageErr = fmt.Errorf("%w: connection refused", fault.Unavailable)
		}, want: codes.Unavailable},
		{name: "another filesystem at the staging path", setup: func(e *env, _, staging string) {
			e.mounts.mount(staging, mountpoint.Info{FSType: "ext4"})
		}, want: codes.FailedPrecondition},
		{name: "deleted dynamic volume", req: func(e *env, _, staging string) *csi.NodeStageVolumeRequest {
			return stageReq(e.managedID("gone"), staging, rwx())
		}, want: codes.FailedPrecondition},
		{name: "static volume by attributes", req: func(e *env, _, staging string) *csi.NodeStageVolumeRequest {
			r := stageReq("admin-chosen-handle", staging, rwx())
			r.VolumeContext = map[string]string{volume.KeySource: "s3://data"}
			return r
		}, want: codes.OK},
		{name: "staged", want: codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.bucket("data")
			id, staging := e.sourceID("data", volume.ModeMount), e.path("staging")
			if tc.setup != nil {
				tc.setup(e, id, staging)
			}
			req := stageReq(id, staging, rwx())
			if tc.req != nil {
				req = tc.req(e, id, staging)
			}
			_, err := e.d.NodeStageVolume(context.Background(), req)
			wantCode(t, "NodeStageVolume", err, tc.want)
			rec, lerr := e.cfg.State.Load(req.GetVolumeId())
			if lerr != nil {
				t.Fatal(lerr)
			}
			if tc.want != codes.OK {
				if rec != nil && tc.want != codes.Unavailable && tc.want != codes.PermissionDenied {
					t.Fatalf("a refused stage left a record: %+v", rec)
				}
				return
			}
			if rec == nil || rec.StagingPath != req.GetStagingTargetPath() {
				t.Fatalf("record after stage = %+v, want one at %s", rec, req.GetStagingTargetPath())
			}
			if m, _ := e.mounts.Get(req.GetStagingTargetPath()); m == nil || m.FSType != fuseType {
				t.Fatalf("staging path mount = %+v, want %s", m, fuseType)
			}
		})
	}
}

// TestNodeStageRepeat: a repeat of a live stage with the same settings is
// OK and does nothing; other settings answer AlreadyExists; a stale stage
// (dead server, moved path) is released and staged again.
func TestNodeStageRepeat(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(e *env, id string)
		req   func(e *env, id string) *csi.NodeStageVolumeRequest
		want  codes.Code
		// stages and releases are the stager's calls in all.
		stages, releases int
	}{
		{name: "same settings", want: codes.OK, stages: 1},
		{name: "other mount options", req: func(e *env, id string) *csi.NodeStageVolumeRequest {
			return stageReq(id, e.path("staging"), mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER, "ro"))
		}, want: codes.AlreadyExists, stages: 1},
		{name: "read-only access mode", req: func(e *env, id string) *csi.NodeStageVolumeRequest {
			return stageReq(id, e.path("staging"), mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY))
		}, want: codes.AlreadyExists, stages: 1},
		{name: "other secrets", req: func(e *env, id string) *csi.NodeStageVolumeRequest {
			r := stageReq(id, e.path("staging"), rwx())
			r.Secrets = map[string]string{secretKey: ambientKey}
			return r
		}, want: codes.AlreadyExists, stages: 1},
		{name: "other volume mount group only", req: func(e *env, id string) *csi.NodeStageVolumeRequest {
			vc := rwx()
			vc.GetMount().VolumeMountGroup = "2000"
			return stageReq(id, e.path("staging"), vc)
		}, want: codes.OK, stages: 1},
		{name: "dead server", setup: func(e *env, id string) { e.stagers[volume.ModeMount].kill(id) }, want: codes.OK, stages: 2, releases: 1},
		{name: "moved staging path", req: func(e *env, id string) *csi.NodeStageVolumeRequest {
			return stageReq(id, e.path("staging2"), rwx())
		}, want: codes.OK, stages: 2, releases: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.bucket("data")
			id := e.sourceID("data", volume.ModeMount)
			e.stage(id, e.path("staging"))
			if tc.setup != nil {
				tc.setup(e, id)
			}
			req := stageReq(id, e.path("staging"), rwx())
			if tc.req != nil {
				req = tc.req(e, id)
			}
			_, err := e.d.NodeStageVolume(context.Background(), req)
			wantCode(t, "repeated NodeStageVolume", err, tc.want)
			s := e.stagers[volume.ModeMount]
			if s.count("stage") != tc.stages || s.count("release") != tc.releases {
				t.Fatalf("stager calls %v, want %d stages and %d releases", s.calls, tc.stages, tc.releases)
			}
			rec, _ := e.cfg.State.Load(id)
			want := e.path("staging")
			if tc.want == codes.OK {
				want = req.GetStagingTargetPath()
			}
			if rec == nil || rec.StagingPath != want || !e.mounts.has(want) {
				t.Fatalf("after the repeat: record %+v, want staged and mounted at %s", rec, want)
			}
		})
	}
}

// TestNodeUnstageVolume checks NodeUnstageVolume's answers: required
// fields, unknown volumes and repeats (OK), and pending work (the
// retryable Unavailable, with everything kept for the retry).
func TestNodeUnstageVolume(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode volume.Mode
		// setup runs after the volume is staged at staging.
		setup     func(e *env, id, staging string)
		id, path  string // override the request's fields ("-" empties one)
		want      codes.Code
		keepStage bool
	}{
		{name: "no volume ID", id: "-", want: codes.InvalidArgument, keepStage: true},
		{name: "no staging path", path: "-", want: codes.InvalidArgument, keepStage: true},
		{name: "relative staging path", path: "staging", want: codes.InvalidArgument, keepStage: true},
		{name: "unknown volume", id: "no-such-volume", want: codes.OK, keepStage: true},
		{name: "other staging path", path: "/var/lib/other", want: codes.OK, keepStage: true},
		{name: "staged", want: codes.OK},
		{name: "staged MOUNT_CACHED", mode: volume.ModeMountCached, want: codes.OK},
		{name: "MOUNT_CACHED uploads pending", mode: volume.ModeMountCached, setup: func(e *env, _, _ string) {
			e.stagers[volume.ModeMountCached].unstageErr = fmt.Errorf("%w: 3 files (12 MiB) still to upload", fault.Pending)
		}, want: codes.Unavailable, keepStage: true},
		{name: "staging path busy", setup: func(e *env, _, staging string) { e.mounts.busy[staging] = true },
			want: codes.Unavailable, keepStage: true},
		{name: "mount left below the state directory", setup: func(e *env, id, _ string) {
			e.mounts.mount(e.cfg.State.VolumeDir(id)+"/cache", mountpoint.Info{FSType: "tmpfs"})
		}, want: codes.Unavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.bucket("data")
			mode := tc.mode
			if mode == "" {
				mode = volume.ModeMount
			}
			id, staging := e.sourceID("data", mode), e.path("staging")
			e.stage(id, staging)
			if tc.setup != nil {
				tc.setup(e, id, staging)
			}
			req := &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}
			override(&req.VolumeId, tc.id)
			override(&req.StagingTargetPath, tc.path)
			_, err := e.d.NodeUnstageVolume(context.Background(), req)
			wantCode(t, "NodeUnstageVolume", err, tc.want)
			rec, _ := e.cfg.State.Load(id)
			if (rec != nil) != (tc.keepStage || tc.want != codes.OK) {
				t.Fatalf("record after unstage = %+v, want kept %v", rec, tc.keepStage)
			}
			if tc.want != codes.OK || tc.keepStage {
				return
			}
			if e.mounts.has(staging) {
				t.Fatal("the staging path is still mounted after unstage")
			}
			_, err = e.d.NodeUnstageVolume(context.Background(), req)
			wantCode(t, "repeated NodeUnstageVolume", err, codes.OK)
		})
	}
}

// override sets *field to v: "" keeps it, "-" empties it.
func override(field *string, v string) {
	switch v {
	case "":
	case "-":
		*field = ""
	default:
		*field = v
	}
}

// TestNodeUnstageForeignMount: an unknown volume's staging path that holds
// a filesystem this driver did not make is refused, never unmounted.
func TestNodeUnstageForeignMount(t *testing.T) {
	e := newEnv(t)
	e.mounts.mount(e.path("staging"), mountpoint.Info{FSType: "ext4"})
	_, err := e.d.NodeUnstageVolume(context.Background(), &csi.NodeUnstageVolumeRequest{VolumeId: "v", StagingTargetPath: e.path("staging")})
	wantCode(t, "NodeUnstageVolume", err, codes.FailedPrecondition)
	if !e.mounts.has(e.path("staging")) {
		t.Fatal("the foreign mount was removed")
	}
}

// TestNodeOverlap: while a stage of a volume runs, every other node call
// on that volume answers Aborted at once; another volume is not held up.
func TestNodeOverlap(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.bucket("data")
	e.bucket("other")
	id, staging := e.sourceID("data", volume.ModeMount), e.path("staging")
	s := e.stagers[volume.ModeMount]
	entered, block := make(chan struct{}), make(chan struct{})
	s.entered, s.block = entered, block
	done := make(chan error, 1)
	go func() {
		_, err := e.d.NodeStageVolume(ctx, stageReq(id, staging, rwx()))
		done <- err
	}()
	<-entered
	calls := map[string]func() error{
		"NodeStageVolume": func() error { _, err := e.d.NodeStageVolume(ctx, stageReq(id, staging, rwx())); return err },
		"NodeUnstageVolume": func() error {
			_, err := e.d.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging})
			return err
		},
		"NodePublishVolume": func() error {
			_, err := e.d.NodePublishVolume(ctx, publishReq(id, staging, e.path("target"), rwx()))
			return err
		},
		"NodeUnpublishVolume": func() error {
			_, err := e.d.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: e.path("target")})
			return err
		},
	}
	for name, call := range calls {
		wantCode(t, name+" during a stage", call(), codes.Aborted)
	}
	_, err := e.d.NodeStageVolume(ctx, stageReq(e.sourceID("other", volume.ModeMount), e.path("staging-other"), rwx()))
	wantCode(t, "NodeStageVolume of another volume", err, codes.OK)
	close(block)
	wantCode(t, "the first NodeStageVolume", <-done, codes.OK)
	wantCode(t, "NodeStageVolume after the first", calls["NodeStageVolume"](), codes.OK)
}
