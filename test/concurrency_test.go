package test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// untilNotAborted repeats call while it answers Aborted (another call on
// the same volume is running), as the CO does.
func untilNotAborted(call func() error) error {
	for {
		err := call()
		if status.Code(err) != codes.Aborted {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// parallel runs f n times at once and returns the errors.
func parallel(n int, f func() error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = untilNotAborted(f) }()
	}
	wg.Wait()
	return errs
}

// mountsBelow counts the mount points below dir.
func mountsBelow(t *testing.T, dir string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	return out
}

// mounterProcesses counts the running FUSE servers of the driver whose
// state directory is stateDir: bucket-csi-mounter processes (recognised by
// their exe link) holding a file under stateDir open (their log), so
// servers of other tests running at the same time are not counted.
func mounterProcesses(t *testing.T, stateDir string) int {
	t.Helper()
	n := 0
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		exe, err := os.Readlink(filepath.Join(d, "exe"))
		if err != nil || !strings.HasSuffix(exe, "/bucket-csi-mounter") {
			continue
		}
		fds, _ := filepath.Glob(filepath.Join(d, "fd", "*"))
		for _, fd := range fds {
			if target, err := os.Readlink(fd); err == nil && strings.HasPrefix(target, stateDir+"/") {
				n++
				break
			}
		}
	}
	return n
}

func fdCount(t *testing.T, pid int) int {
	t.Helper()
	fds, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "fd"))
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// TestConcurrentIdenticalCalls: identical CreateVolume, NodeStage and
// NodePublish calls racing each other end in one bucket, one FUSE server
// and one mount each; the losers answer Aborted and then OK.
func TestConcurrentIdenticalCalls(t *testing.T) {
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t)
	ctx := context.Background()
	ids := make([]string, 8)
	var mu sync.Mutex
	i := 0
	for _, err := range parallel(8, func() error {
		v, err := c.Controller.CreateVolume(ctx, createReq("pvc-race", nil, s3.Secrets()))
		if err == nil {
			mu.Lock()
			ids[i] = v.GetVolume().GetVolumeId()
			i++
			mu.Unlock()
		}
		return err
	}) {
		if err != nil {
			t.Fatalf("concurrent CreateVolume: %v", err)
		}
	}
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("concurrent CreateVolume answered different IDs: %v", ids)
		}
	}
	buckets, err := s3.Store(t).ListBuckets(ctx)
	if err != nil || len(buckets) != 1 {
		t.Fatalf("buckets after concurrent CreateVolume: %v %v", buckets, err)
	}
	staging, target := podPaths(t, drv)
	if err := os.MkdirAll(staging, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
		t.Fatal(err)
	}
	for _, err := range parallel(8, func() error {
		_, err := c.Node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: ids[0], StagingTargetPath: staging, VolumeCapability: testenv.MountCap(rwx), Secrets: s3.Secrets()})
		return err
	}) {
		if err != nil {
			t.Fatalf("concurrent NodeStageVolume: %v", err)
		}
	}
	for _, err := range parallel(8, func() error {
		_, err := c.Node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: ids[0], StagingTargetPath: staging, TargetPath: target, VolumeCapability: testenv.MountCap(rwx)})
		return err
	}) {
		if err != nil {
			t.Fatalf("concurrent NodePublishVolume: %v", err)
		}
	}
	if m := mountsBelow(t, filepath.Dir(staging)); len(m) != 2 {
		t.Fatalf("want one staging and one target mount, got %v", m)
	}
	if n := mounterProcesses(t, drv.StateDir); n != 1 {
		t.Fatalf("want one FUSE server, got %d", n)
	}
	unpublish(t, c, ids[0], staging, target)
}

// TestPublishCycles: 200 publish/unpublish cycles and 20 stage/unstage
// cycles leave no mount, no FUSE server and no file descriptor behind.
func TestPublishCycles(t *testing.T) {
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t)
	ctx := context.Background()
	v, err := c.Controller.CreateVolume(ctx, createReq("pvc-cycles", nil, s3.Secrets()))
	if err != nil {
		t.Fatal(err)
	}
	id := v.GetVolume().GetVolumeId()
	staging, target := podPaths(t, drv)
	publish(t, c, id, staging, target, s3.Secrets(), false)
	fdsBefore := fdCount(t, drv.Pid())
	for i := 0; i < 200; i++ {
		if _, err := c.Node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
			t.Fatalf("cycle %d: unpublish: %v", i, err)
		}
		if _, err := c.Node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: target, VolumeCapability: testenv.MountCap(rwx)}); err != nil {
			t.Fatalf("cycle %d: publish: %v", i, err)
		}
	}
	if m := mountsBelow(t, filepath.Dir(staging)); len(m) != 2 {
		t.Fatalf("after 200 publish cycles: mounts %v", m)
	}
	unpublish(t, c, id, staging, target)
	for i := 0; i < 20; i++ {
		publish(t, c, id, staging, target, s3.Secrets(), false)
		unpublish(t, c, id, staging, target)
	}
	if m := mountsBelow(t, filepath.Dir(staging)); len(m) != 0 {
		t.Fatalf("mounts left: %v", m)
	}
	for i := 0; mounterProcesses(t, drv.StateDir) != 0 && i < 100; i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if n := mounterProcesses(t, drv.StateDir); n != 0 {
		t.Fatalf("%d FUSE servers left after the cycles", n)
	}
	if fdsAfter := fdCount(t, drv.Pid()); fdsAfter > fdsBefore+3 {
		t.Fatalf("driver file descriptors grew from %d to %d", fdsBefore, fdsAfter)
	}
}
