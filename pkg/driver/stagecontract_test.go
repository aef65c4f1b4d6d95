package driver

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/bucket-csi/bucket-csi/pkg/events"
	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// The node service knows no mode: what it does around a stage follows
// what the stager declares through the stage API. These tests swap the
// declarations between the fake stagers to show that.

// eventLog records the reason of each event (events.Recorder; the
// driver offers each event to the pod and the PV, zero refs included).
type eventLog struct {
	mu      sync.Mutex
	reasons []string
	refs    []events.Ref
}

func (l *eventLog) Event(ref events.Ref, warning bool, reason, msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reasons = append(l.reasons, reason)
	l.refs = append(l.refs, ref)
}

func (l *eventLog) count(reason string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.reasons {
		if r == reason {
			n++
		}
	}
	return n
}

// TestFailedStageDiscardsByStager: after a failed stage, the record and
// state directory are removed exactly when the stager says a failed
// stage's state is disposable (stage.Disposer), whatever the mode.
func TestFailedStageDiscardsByStager(t *testing.T) {
	for _, tc := range []struct {
		mode     volume.Mode
		discard  bool
		wantKept bool
	}{
		{volume.ModeMount, true, false},
		{volume.ModeMount, false, true},
		{volume.ModeMountCached, true, false},
		{volume.ModeMountCached, false, true},
	} {
		t.Run(fmt.Sprintf("%s discard=%v", tc.mode, tc.discard), func(t *testing.T) {
			e := newEnv(t)
			e.bucket("data")
			e.stagers[tc.mode].discard = tc.discard
			e.stagers[tc.mode].stageErr = fmt.Errorf("%w: connection refused", fault.Unavailable)
			id := e.sourceID("data", tc.mode)
			_, err := e.d.NodeStageVolume(context.Background(), stageReq(id, e.path("staging"), rwx()))
			wantCode(t, "NodeStageVolume", err, codes.Unavailable)
			rec, err := e.cfg.State.Load(id)
			if err != nil {
				t.Fatal(err)
			}
			if (rec != nil) != tc.wantKept {
				t.Fatalf("record after a failed stage = %+v, want kept %v", rec, tc.wantKept)
			}
		})
	}
}

// TestUnstageFlushEvents: an unstage the stager reports as a flush
// (stage.Unstaged.Flush) that answers fault.Pending tells the PV that
// uploads are pending, and once it succeeds that every file is in the
// bucket; an unstage that is no flush and is pending (a busy mount) tells
// nothing.
func TestUnstageFlushEvents(t *testing.T) {
	for _, tc := range []struct {
		mode  volume.Mode
		flush bool
	}{
		{volume.ModeMountCached, true},
		{volume.ModeMountCached, false},
		{volume.ModeMount, true},
	} {
		t.Run(fmt.Sprintf("%s flush=%v", tc.mode, tc.flush), func(t *testing.T) {
			log := &eventLog{}
			e := newEnv(t, func(c *Config) { c.Events = log })
			e.bucket("data")
			e.stagers[tc.mode].flush = tc.flush
			id, staging := e.sourceID("data", tc.mode), e.path("staging")
			e.stage(id, staging)
			req := &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}
			e.stagers[tc.mode].unstageErr = fmt.Errorf("%w: 3 files still to upload", fault.Pending)
			_, err := e.d.NodeUnstageVolume(context.Background(), req)
			wantCode(t, "pending NodeUnstageVolume", err, codes.Unavailable)
			e.stagers[tc.mode].unstageErr = nil
			_, err = e.d.NodeUnstageVolume(context.Background(), req)
			wantCode(t, "NodeUnstageVolume", err, codes.OK)
			for _, reason := range []string{ReasonUploadsPending, ReasonUploadsFlushed} {
				if got := log.count(reason) > 0; got != tc.flush {
					t.Errorf("%s event told: %v, want %v", reason, got, tc.flush)
				}
			}
		})
	}
}
