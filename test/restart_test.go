package test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/bucket-csi/bucket-csi/pkg/mountpoint"
	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// workload writes and reads back files in dir until stop is closed,
// counting operations and errors.
func workload(dir string, stop <-chan struct{}, ops, errs *atomic.Int64, firstErr *atomic.Value) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		p := filepath.Join(dir, fmt.Sprintf("w-%04d.txt", i%50))
		data := []byte(fmt.Sprintf("iteration %d at %s", i, time.Now().Format(time.RFC3339Nano)))
		err := os.WriteFile(p, data, 0o644)
		if err == nil {
			var got []byte
			if got, err = os.ReadFile(p); err == nil && !bytes.Equal(got, data) {
				err = fmt.Errorf("read back %q, wrote %q", got, data)
			}
		}
		ops.Add(1)
		if err != nil {
			errs.Add(1)
			firstErr.CompareAndSwap(nil, err.Error())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestNodePluginKilled: the node plugin is SIGKILLed and restarted while
// pods read and write MOUNT and MOUNT_CACHED volumes. The FUSE servers keep
// serving (zero workload errors), and the restarted plugin finds the
// volumes in its state directory and unpublishes and unstages them
// cleanly, flushing MOUNT_CACHED uploads first.
func TestNodePluginKilled(t *testing.T) {
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t)
	ctx := context.Background()
	type vol struct{ id, bucket, staging, target string }
	var vols []vol
	for _, mode := range []string{"MOUNT", "MOUNT_CACHED"} {
		v, err := c.Controller.CreateVolume(ctx, createReq("pvc-restart-"+mode, map[string]string{"mode": mode}, s3.Secrets()))
		if err != nil {
			t.Fatal(err)
		}
		staging, target := podPaths(t, drv)
		vv := vol{v.GetVolume().GetVolumeId(), v.GetVolume().GetVolumeContext()["bucket"], staging, target}
		publish(t, c, vv.id, vv.staging, vv.target, s3.Secrets(), false)
		vols = append(vols, vv)
	}
	var ops, errs atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, v := range vols {
		wg.Add(1)
		go func() { defer wg.Done(); workload(v.target, stop, &ops, &errs, &firstErr) }()
	}
	time.Sleep(500 * time.Millisecond)
	before := ops.Load()
	drv.Kill(syscall.SIGKILL)
	time.Sleep(time.Second) // the plugin is gone; pods keep working
	during := ops.Load() - before
	if err := drv.Restart(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	if errs.Load() != 0 || during == 0 {
		t.Fatalf("workload: %d errors in %d operations (%d while the plugin was dead); first: %v", errs.Load(), ops.Load(), during, firstErr.Load())
	}
	c = drv.Dial(t)
	for _, v := range vols {
		unpublish(t, c, v.id, v.staging, v.target)
		if _, err := s3.ReadObject(t, v.bucket, "w-0000.txt"); err != nil {
			t.Fatalf("a file written before the restart is not in %s: %v", v.bucket, err)
		}
	}
	if left := drv.Staged(t); len(left) != 0 {
		t.Fatalf("volumes left staged: %+v", left)
	}
	t.Logf("%d operations, %d while the node plugin was dead, 0 errors", ops.Load(), during)
}

// TestHungFUSEServer: with the FUSE server SIGSTOPped, NodeUnpublish and
// NodeUnstage return within their deadlines (kubelet's are 2 minutes; here
// 20s), and leave no mount and no process behind.
func TestHungFUSEServer(t *testing.T) {
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t)
	ctx := context.Background()
	v, err := c.Controller.CreateVolume(ctx, createReq("pvc-hung", map[string]string{"mode": "MOUNT"}, s3.Secrets()))
	if err != nil {
		t.Fatal(err)
	}
	id := v.GetVolume().GetVolumeId()
	staging, target := podPaths(t, drv)
	publish(t, c, id, staging, target, s3.Secrets(), false)
	if err := os.WriteFile(filepath.Join(target, "before.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	server := drv.Staged(t)[0].Server
	if err := syscall.Kill(server.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(server.Pid, syscall.SIGKILL) })
	// A pod process stuck in the hung mount, as happens in real life.
	go func() { _, _ = os.ReadDir(target) }()
	call := func(name string, f func(context.Context) error) {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		start := time.Now()
		err := f(cctx)
		if took := time.Since(start); took > 20*time.Second {
			t.Fatalf("%s took %s, past its deadline", name, took)
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	call("NodeUnpublishVolume", func(cctx context.Context) error {
		_, err := c.Node.NodeUnpublishVolume(cctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target})
		return err
	})
	call("NodeUnstageVolume", func(cctx context.Context) error {
		_, err := c.Node.NodeUnstageVolume(cctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging})
		return err
	})
	if ok, _ := mountpoint.Mounted(staging); ok {
		t.Fatal("staging path still mounted")
	}
	if !testenv.WaitGone(server) {
		t.Fatal("the hung FUSE server is still running")
	}
}

// TestDeadFUSEServerRepaired: a FUSE server killed (as by the OOM killer)
// is reported INACCESSIBLE by NodeGetVolumeHealth; the next publish
// restarts it without secrets and works; the dead pod mount unpublishes.
func TestDeadFUSEServerRepaired(t *testing.T) {
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t)
	ctx := context.Background()
	v, err := c.Controller.CreateVolume(ctx, createReq("pvc-dead", map[string]string{"mode": "MOUNT"}, s3.Secrets()))
	if err != nil {
		t.Fatal(err)
	}
	id := v.GetVolume().GetVolumeId()
	work := drv.TempDir(t)
	staging, target := filepath.Join(work, "staging"), filepath.Join(work, "pod1", "mount")
	publish(t, c, id, staging, target, s3.Secrets(), false)
	health := func() []*csi.VolumeHealth_VolumeHealthEntry {
		h, err := c.Node.NodeGetVolumeHealth(ctx, &csi.NodeGetVolumeHealthRequest{VolumeId: id})
		if err != nil {
			t.Fatal(err)
		}
		return h.GetVolumeHealth().GetHealthStatuses()
	}
	if h := health(); len(h) != 0 {
		t.Fatalf("healthy volume reported %v", h)
	}
	server := drv.Staged(t)[0].Server
	if err := syscall.Kill(server.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testenv.MustBeGone(t, server)
	if h := health(); len(h) != 1 || h[0].GetStatus() != csi.VolumeHealthErrorType_INACCESSIBLE {
		t.Fatalf("dead server reported %v, want INACCESSIBLE", h)
	}
	target2 := filepath.Join(work, "pod2", "mount")
	if err := os.MkdirAll(filepath.Dir(target2), 0o750); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: target2, VolumeCapability: testenv.MountCap(rwx)}); err != nil {
		t.Fatalf("publish after the server died: %v", err)
	}
	if err := os.WriteFile(filepath.Join(target2, "after.txt"), []byte("repaired"), 0o644); err != nil {
		t.Fatalf("writing through the repaired mount: %v", err)
	}
	if got, err := s3.ReadObject(t, v.GetVolume().GetVolumeContext()["bucket"], "after.txt"); err != nil || string(got) != "repaired" {
		t.Fatalf("bucket after repair: %q %v", got, err)
	}
	if h := health(); len(h) != 0 {
		t.Fatalf("repaired volume reported %v", h)
	}
	if _, err := c.Node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
		t.Fatalf("unpublish of the dead pod mount: %v", err)
	}
	unpublish(t, c, id, staging, target2)
}
