package test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bucket-csi/bucket-csi/pkg/mountpoint"
	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// budgetRefusal fails unless err is ResourceExhausted naming the figures
// of the node disk budget.
func budgetRefusal(t *testing.T, what string, err error) {
	t.Helper()
	msg := status.Convert(err).Message()
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(msg, "node disk") || !strings.Contains(msg, "bytes but the node's budget is") || !strings.Contains(msg, "already reserved") {
		t.Fatalf("%s = %v, want ResourceExhausted with the node disk budget's figures", what, err)
	}
}

// stageCached stages a MOUNT_CACHED volume and returns the call's error.
func stageCached(t *testing.T, c testenv.Clients, id, staging string, secrets map[string]string) error {
	t.Helper()
	if err := os.MkdirAll(staging, 0o750); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := c.Node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: testenv.MountCap(rwx), Secrets: secrets})
	return err
}

func unstage(t *testing.T, c testenv.Clients, id, staging string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := c.Node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
		t.Fatalf("NodeUnstageVolume: %v", err)
	}
}

// TestNodeDiskBudget: COPY and MOUNT_CACHED draw from one node disk budget
// (80% of the state directory's free space, here a 90 MiB tmpfs: 72 MiB).
// Two COPY stages of 40 MiB (56 MiB with the 16 MiB write space) started
// at once each fit the disk but not
// together: one answers ResourceExhausted with the figures, the other
// completes. A MOUNT_CACHED stage whose cache limit (50 MiB) does not fit
// beside the copy is refused the same way, also after a plugin restart
// (the ledger is in the state directory). Copies are kept (--keep-copies):
// once the copy is unstaged, its kept data is evicted to make room for the
// cache; the refused copy does not fit beside the cache (whose image then
// takes its 50 MiB of the disk) until the cache is unstaged.
func TestNodeDiskBudget(t *testing.T) {
	testenv.RequireFUSE(t)
	small := filepath.Join(t.TempDir(), "state")
	if err := os.MkdirAll(small, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", small, "tmpfs", 0, "size=90m"); err != nil {
		testenv.Missing(t, "mounting a tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(small, unix.MNT_DETACH) })
	s3, drv, c := startAll(t, "--state-dir", small, "--cache-max-size", fmt.Sprint(50<<20), "--keep-copies")
	ctx := context.Background()
	type vol struct {
		id, staging string
		sums        map[string][32]byte
	}
	var copies []vol
	for _, name := range []string{"copy-a", "copy-b"} {
		sums := fillSource(t, s3, name, 3)
		v, err := c.Controller.CreateVolume(ctx, createReq("pv-"+name, map[string]string{"source": "s3://" + name, "mode": "COPY"}, s3.Secrets()))
		if err != nil {
			t.Fatal(err)
		}
		staging, _ := podPaths(t, drv)
		copies = append(copies, vol{v.GetVolume().GetVolumeId(), staging, sums})
	}
	errs := make([]error, len(copies))
	done := make(chan int)
	for i, v := range copies {
		go func() { errs[i] = stageCopy(t, c, v.id, v.staging, s3.Secrets()); done <- i }()
	}
	<-done
	<-done
	staged, refused := copies[0], copies[1]
	if errs[0] != nil {
		staged, refused = copies[1], copies[0]
		errs[0], errs[1] = errs[1], errs[0]
	}
	if errs[0] != nil {
		t.Fatalf("neither concurrent COPY stage completed: %v; %v", errs[0], errs[1])
	}
	budgetRefusal(t, "the second of two concurrent COPY stages", errs[1])
	t.Logf("refused: %s", status.Convert(errs[1]).Message())
	if ok, _ := mountpoint.Mounted(refused.staging); ok {
		t.Fatal("a refused copy was published")
	}
	checkCopy(t, staged.staging, staged.sums)

	cv, err := c.Controller.CreateVolume(ctx, createReq("pv-cached", map[string]string{"mode": "MOUNT_CACHED"}, s3.Secrets()))
	if err != nil {
		t.Fatal(err)
	}
	cached := cv.GetVolume().GetVolumeId()
	cachedStaging, _ := podPaths(t, drv)
	budgetRefusal(t, "a MOUNT_CACHED stage beside a 40 MiB copy", stageCached(t, c, cached, cachedStaging, s3.Secrets()))

	// The ledger survives a plugin restart: the staged copy still counts.
	drv.Kill(syscall.SIGKILL)
	if err := drv.Restart(); err != nil {
		t.Fatal(err)
	}
	c = drv.Dial(t)
	budgetRefusal(t, "a MOUNT_CACHED stage after a plugin restart", stageCached(t, c, cached, cachedStaging, s3.Secrets()))

	// The unstaged copy is kept, and evicted when the cache needs room.
	unstage(t, c, staged.id, staged.staging)
	if err := stageCached(t, c, cached, cachedStaging, s3.Secrets()); err != nil {
		t.Fatalf("MOUNT_CACHED stage after the copy was unstaged: %v", err)
	}
	if !strings.Contains(drv.Log.String(), "evicted kept data to make room") {
		t.Fatalf("the kept copy was not evicted for the cache; driver log:\n%s", drv.Log.String())
	}
	// The cache's image takes its 50 MiB of the tmpfs when it is made, so
	// the disk itself refuses the copy before the budget is asked.
	err = stageCopy(t, c, refused.id, refused.staging, s3.Secrets())
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "bytes are free at") {
		t.Fatalf("a COPY stage beside a 50 MiB cache = %v, want ResourceExhausted naming the free disk", err)
	}
	unstage(t, c, cached, cachedStaging)
	if err := stageCopy(t, c, refused.id, refused.staging, s3.Secrets()); err != nil {
		t.Fatalf("the refused COPY stage once the node has room: %v", err)
	}
	checkCopy(t, refused.staging, refused.sums)
	unstage(t, c, refused.id, refused.staging)
}

// checkCopy fails unless dir holds every object of sums, sha256-equal.
func checkCopy(t *testing.T, dir string, sums map[string][32]byte) {
	t.Helper()
	for key, want := range sums {
		got, err := os.ReadFile(filepath.Join(dir, key))
		if err != nil || sha256.Sum256(got) != want {
			t.Fatalf("%s in the copy: err %v or sha256 differs", key, err)
		}
	}
}

// TestReadAheadMemoryShares: each MOUNT FUSE server gets its share of the
// node's read-ahead memory (here 48 MiB, 32 MiB per server): the first
// server its full share, the next what is left (16 MiB, the floor), the
// next none, and it still reads every byte right (straight from the
// store); an unstage gives its share back to the next server.
func TestReadAheadMemoryShares(t *testing.T) {
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t, "--read-ahead-node-memory", fmt.Sprint(48<<20), "--read-ahead-server-memory", fmt.Sprint(32<<20))
	ctx := context.Background()
	data := randomBytes(t, 20<<20+3)
	share := func(id string) int64 {
		t.Helper()
		var cfg struct {
			ReadAheadMemory int64 `json:"readAheadMemory"`
		}
		savedMounterConfig(t, drv, id, &cfg)
		return cfg.ReadAheadMemory
	}
	type vol struct{ id, staging, target string }
	stageOne := func(name string) vol {
		v, err := c.Controller.CreateVolume(ctx, createReq(name, map[string]string{"mode": "MOUNT"}, s3.Secrets()))
		if err != nil {
			t.Fatal(err)
		}
		if err := s3.Store(t).PutObject(ctx, v.GetVolume().GetVolumeContext()["bucket"], "big.bin", data); err != nil {
			t.Fatal(err)
		}
		staging, target := podPaths(t, drv)
		publish(t, c, v.GetVolume().GetVolumeId(), staging, target, s3.Secrets(), true)
		return vol{v.GetVolume().GetVolumeId(), staging, target}
	}
	var vols []vol
	for i, want := range []int64{32 << 20, 16 << 20, -1} {
		v := stageOne(fmt.Sprintf("pv-ra-%d", i))
		if got := share(v.id); got != want {
			t.Fatalf("server %d got a read-ahead share of %d bytes, want %d", i, got, want)
		}
		vols = append(vols, v)
	}
	for _, v := range vols {
		start := time.Now()
		got, err := os.ReadFile(filepath.Join(v.target, "big.bin"))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("reading through a server (share %d): err %v, %d bytes, equal %v", share(v.id), err, len(got), bytes.Equal(got, data))
		}
		t.Logf("share %d bytes: read %d bytes in %s", share(v.id), len(got), time.Since(start).Round(time.Millisecond))
	}
	unpublish(t, c, vols[0].id, vols[0].staging, vols[0].target)
	v := stageOne("pv-ra-3")
	if got := share(v.id); got != 32<<20 {
		t.Fatalf("after an unstage the next server got %d bytes, want the full 32 MiB", got)
	}
	for _, v := range append(vols[1:], v) {
		unpublish(t, c, v.id, v.staging, v.target)
	}
}

// TestFUSEServerCap: with --max-fuse-servers 1, a second MOUNT or
// MOUNT_CACHED volume staged on the node answers ResourceExhausted naming
// the cap (before, nothing bounded the servers a pod's volumes started,
// each about 50 MiB of the mounter's memory); a repeated stage of the
// staged volume is not refused, and once it is unstaged the next volume
// stages.
func TestFUSEServerCap(t *testing.T) {
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t, "--max-fuse-servers", "1")
	create := func(name, mode string) (id, staging string) {
		vol, err := c.Controller.CreateVolume(context.Background(), createReq(name, map[string]string{"mode": mode}, s3.Secrets()))
		if err != nil {
			t.Fatal(err)
		}
		return vol.GetVolume().GetVolumeId(), filepath.Join(drv.TempDir(t), "staging")
	}
	first, firstStaging := create("pvc-cap-first", "MOUNT")
	second, secondStaging := create("pvc-cap-second", "MOUNT")
	cached, cachedStaging := create("pvc-cap-cached", "MOUNT_CACHED")
	if err := stageCached(t, c, first, firstStaging, s3.Secrets()); err != nil {
		t.Fatalf("first stage: %v", err)
	}
	if err := stageCached(t, c, first, firstStaging, s3.Secrets()); err != nil {
		t.Fatalf("repeated stage of the staged volume: %v", err)
	}
	for _, v := range []struct{ what, id, staging string }{{"MOUNT", second, secondStaging}, {"MOUNT_CACHED", cached, cachedStaging}} {
		err := stageCached(t, c, v.id, v.staging, s3.Secrets())
		msg := status.Convert(err).Message()
		if status.Code(err) != codes.ResourceExhausted || !strings.Contains(msg, "FUSE servers") || !strings.Contains(msg, "1 servers but the node's budget is 1 servers") {
			t.Fatalf("a second volume's stage (%s) = %v, want ResourceExhausted naming the FUSE server cap", v.what, err)
		}
	}
	unstage(t, c, first, firstStaging)
	if err := stageCached(t, c, second, secondStaging, s3.Secrets()); err != nil {
		t.Fatalf("stage after the first volume was unstaged: %v", err)
	}
	unstage(t, c, second, secondStaging)
}

// TestFUSEServerCapCountsEarlierVolumes: a volume staged while there was
// no cap (before an upgrade, or with --max-fuse-servers 0) holds a place
// once the plugin restarts with a cap of 1: the next volume is refused.
func TestFUSEServerCapCountsEarlierVolumes(t *testing.T) {
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t, "--max-fuse-servers", "0")
	ids := make([]string, 2)
	for i := range ids {
		vol, err := c.Controller.CreateVolume(context.Background(), createReq(fmt.Sprintf("pvc-cap-early-%d", i), map[string]string{"mode": "MOUNT"}, s3.Secrets()))
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = vol.GetVolume().GetVolumeId()
	}
	early := filepath.Join(drv.TempDir(t), "staging")
	if err := stageCached(t, c, ids[0], early, s3.Secrets()); err != nil {
		t.Fatal(err)
	}
	drv.Kill(syscall.SIGKILL)
	if err := drv.RestartWith("--max-fuse-servers", "1"); err != nil {
		t.Fatal(err)
	}
	c = drv.Dial(t)
	err := stageCached(t, c, ids[1], filepath.Join(drv.TempDir(t), "staging"), s3.Secrets())
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "FUSE servers") {
		t.Fatalf("a stage beside a volume staged before the cap = %v, want ResourceExhausted naming the FUSE server cap", err)
	}
	unstage(t, c, ids[0], early)
}
