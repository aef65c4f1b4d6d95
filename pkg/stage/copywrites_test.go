package stage

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bucket-csi/bucket-csi/pkg/diskimage"
	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/mountpoint"
	"github.com/bucket-csi/bucket-csi/pkg/nodestate"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// TestFailedCopyTakesAwayTheWriteSpaceItMade: the write space a copy job
// attached while it downloaded stays for the next Stage when the copy
// succeeds; a copy that fails answers its own error and takes away the
// image it made (kubelet never unstages a stage that failed with a final
// code), but leaves one that was there before it, with what pods wrote
// into it.
func TestFailedCopyTakesAwayTheWriteSpaceItMade(t *testing.T) {
	requireRoot(t)
	c := &Copy{Root: t.TempDir(), WriteSpace: diskimage.MinSize, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	const id = "v"
	img, dir := c.writesImage(id), c.writesDir(id)
	t.Cleanup(func() { _ = diskimage.Remove(img, dir) })
	mounted := func() bool {
		ok, err := mountpoint.Mounted(dir)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	failed := errors.New("the copy failed")

	if removed, err := c.settleWrites(id, c.attachWritesAsync(id), failed); err != failed || !removed {
		t.Fatalf("a failed copy answered %v, removed %v; want its own error, removed", err, removed)
	}
	if _, err := os.Stat(img); !errors.Is(err, os.ErrNotExist) || mounted() {
		t.Fatalf("a failed copy left the write space it made (image: %v, mounted: %v)", err, mounted())
	}

	if removed, err := c.settleWrites(id, c.attachWritesAsync(id), nil); err != nil || removed {
		t.Fatalf("a complete copy: removed %v, %v", removed, err)
	}
	if !mounted() {
		t.Fatal("a complete copy's write space is not mounted")
	}
	written := filepath.Join(dir, "written-by-a-pod")
	if err := os.WriteFile(written, []byte("kept"), 0o600); err != nil {
		t.Fatal(err)
	}
	if removed, err := c.settleWrites(id, c.attachWritesAsync(id), failed); err != failed || removed {
		t.Fatalf("a failed copy answered %v, removed %v; want its own error, nothing removed", err, removed)
	}
	if got, err := os.ReadFile(written); err != nil || string(got) != "kept" || !mounted() {
		t.Fatalf("a failed copy took away a write space made before it: %q, %v, mounted %v", got, err, mounted())
	}
}

// TestNoCopyUnderALiveWriteSpace: while an overlay of the volume's write
// space is still mounted (here a pod's bind of it, left after its staging
// mount went away), Stage answers Unavailable naming it and starts no
// copy; once the pod's bind is gone, the copy runs (and fails here with
// its store's own error). The state directory's path holds a space and
// an "=", which mountinfo shows escaped.
func TestNoCopyUnderALiveWriteSpace(t *testing.T) {
	requireRoot(t)
	c := &Copy{Stores: slowAndBad(make(chan struct{})), Root: filepath.Join(t.TempDir(), "copies dir=1"), WriteSpace: diskimage.MinSize, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	const id = "v"
	t.Cleanup(func() { _ = diskimage.Remove(c.writesImage(id), c.writesDir(id)) })
	if err := os.MkdirAll(filepath.Join(c.dir(id), "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	staging, pod := t.TempDir(), t.TempDir()
	if err := c.mountWritable(id, staging); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mountpoint.Unmount(staging) })
	if err := mountpoint.Bind(staging, pod, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mountpoint.Unmount(pod) })
	if err := mountpoint.Unmount(staging); err != nil {
		t.Fatal(err)
	}
	stage := func() error {
		req := Request{VolumeID: id, StagingPath: t.TempDir(), Handle: volume.Handle{Spec: volume.Spec{Store: "bad", Bucket: "b"}}}
		return c.Stage(context.Background(), req, &nodestate.Volume{})
	}
	if err := stage(); !errors.Is(err, fault.Unavailable) || !strings.Contains(err.Error(), pod) || c.hasJob(id) {
		t.Fatalf("a stage under a live write space = %v (job started: %v), want Unavailable naming %s and no copy", err, c.hasJob(id), pod)
	}
	if err := mountpoint.Unmount(pod); err != nil {
		t.Fatal(err)
	}
	if err := stage(); !errors.Is(err, fault.Invalid) {
		t.Fatalf("a stage once the pod's bind is gone = %v, want the store's own Invalid", err)
	}
}

// TestWritesReserveIsTheImage: a writable volume reserves its write space's
// image at the image's own size, smaller or larger than --copy-write-space
// says now (an attach keeps an existing image as it is), and the flag's
// size while there is no image.
func TestWritesReserveIsTheImage(t *testing.T) {
	c := &Copy{Root: t.TempDir(), WriteSpace: 64 << 20}
	const id = "v"
	if got := c.writesReserve(id); got != 64<<20 {
		t.Fatalf("no image: reserves %d, want the flag's %d", got, 64<<20)
	}
	for _, size := range []int64{32 << 20, 128 << 20} {
		if err := os.MkdirAll(filepath.Dir(c.writesImage(id)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(c.writesImage(id), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(c.writesImage(id), size); err != nil {
			t.Fatal(err)
		}
		if got := c.writesReserve(id); got != size {
			t.Fatalf("an image of %d: reserves %d", size, got)
		}
	}
}
