package stage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/nodestate"
	"github.com/bucket-csi/bucket-csi/pkg/store"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// TestCopyLockNotHeldAcrossSlowWork: a copy whose store is slow to answer
// (here: the store's options block) blocks neither its own NodeStage,
// which answers Pending, nor the stage of another volume.
func TestCopyLockNotHeldAcrossSlowWork(t *testing.T) {
	gate := make(chan struct{})
	c := &Copy{
		Stores: store.Registry{
			"slow": {Rclone: func(store.Secrets, string) (map[string]string, error) {
				<-gate
				return nil, fmt.Errorf("%w: released", fault.Unavailable)
			}},
			"bad": {Rclone: func(store.Secrets, string) (map[string]string, error) {
				return nil, fmt.Errorf("%w: refused secret", fault.Invalid)
			}},
		},
		Root: t.TempDir(),
		Log:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	stage := func(id, kind string, timeout time.Duration) (time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		start := time.Now()
		err := c.Stage(ctx, Request{VolumeID: id, Handle: volume.Handle{Spec: volume.Spec{Store: kind, Bucket: "b"}}}, &nodestate.Volume{})
		return time.Since(start), err
	}
	// Stage waits until 5 s before its deadline: 1 s here.
	took, err := stage("slow-volume", "slow", stageMargin+time.Second)
	if !errors.Is(err, fault.Pending) || took > 3*time.Second {
		t.Fatalf("stage of a volume whose store hangs = %v after %v, want Pending after about 1 s", err, took)
	}
	took, err = stage("other-volume", "bad", time.Minute)
	if !errors.Is(err, fault.Invalid) || took > 2*time.Second {
		t.Fatalf("stage of another volume = %v after %v, want its own Invalid at once", err, took)
	}
	close(gate)
	_, err = stage("slow-volume", "slow", time.Minute)
	if !errors.Is(err, fault.Unavailable) {
		t.Fatalf("stage after the store answered = %v, want its Unavailable", err)
	}
}
