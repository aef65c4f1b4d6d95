package stage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/rclone/rclone/backend/memory"
	rfs "github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/object"
	"github.com/rclone/rclone/fs/operations"
	"golang.org/x/sys/unix"

	"github.com/bucket-csi/bucket-csi/pkg/budget"
	"github.com/bucket-csi/bucket-csi/pkg/copier"
	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/nodestate"
	"github.com/bucket-csi/bucket-csi/pkg/redact"
	"github.com/bucket-csi/bucket-csi/pkg/store"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// slowAndBad is a registry of two stores: "slow", whose options block
// until gate is closed and then fail with Unavailable, and "bad", whose
// options fail at once with Invalid.
func slowAndBad(gate chan struct{}) store.Registry {
	return store.Registry{
		"slow": {Rclone: func(store.Secrets, string) (map[string]string, error) {
			<-gate
			return nil, fmt.Errorf("%w: released", fault.Unavailable)
		}},
		"bad": {Rclone: func(store.Secrets, string) (map[string]string, error) {
			return nil, fmt.Errorf("%w: refused secret", fault.Invalid)
		}},
	}
}

// TestCopyLockNotHeldAcrossSlowWork: a copy whose store is slow to answer
// (here: the store's options block) blocks neither its own NodeStage,
// which answers Pending, nor the stage of another volume.
func TestCopyLockNotHeldAcrossSlowWork(t *testing.T) {
	gate := make(chan struct{})
	c := &Copy{
		Stores: slowAndBad(gate),
		Root:   t.TempDir(),
		Log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
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

// TestCopiesWaitForAPlace: with Parallel 1, a second volume's copy waits
// while the first runs (its stage answers Pending saying so, not its own
// error), starts once the first ends, and an unstage while it waits ends
// the wait at once.
func TestCopiesWaitForAPlace(t *testing.T) {
	gate := make(chan struct{})
	c := &Copy{
		Stores:   slowAndBad(gate),
		Root:     t.TempDir(),
		Parallel: 1,
		Log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		Redact:   &redact.Set{},
	}
	secret := func(id string) string { return "secret-of-the-" + id + "-volume" }
	stage := func(id, kind string) error {
		ctx, cancel := context.WithTimeout(context.Background(), stageMargin+time.Second)
		defer cancel()
		return c.Stage(ctx, Request{VolumeID: id, Handle: volume.Handle{Spec: volume.Spec{Store: kind, Bucket: "b-" + id}},
			Secrets: map[string]string{"key": secret(id)}}, &nodestate.Volume{})
	}
	if err := stage("first", "slow"); !errors.Is(err, fault.Pending) || strings.Contains(err.Error(), "waiting for a place") {
		t.Fatalf("stage of the first volume = %v, want Pending with its progress", err)
	}
	for _, id := range []string{"second", "third"} {
		if err := stage(id, "bad"); !errors.Is(err, fault.Pending) || !strings.Contains(err.Error(), "waiting for a place: at most 1 copies run at once") {
			t.Fatalf("stage of the %s volume beside a running copy = %v, want Pending waiting for a place", id, err)
		}
	}
	// Only the running copy's secret is masked in the process log: copies
	// waiting for a place add nothing every log line is checked against.
	if got := c.Redact.String(secret("first")); got == secret("first") {
		t.Errorf("the running copy's secret is not masked in the log: %q", got)
	}
	if got := c.Redact.String(secret("second")); got != secret("second") {
		t.Errorf("a copy waiting for a place masks its secret in the log already: %q", got)
	}
	stopped := make(chan struct{})
	go func() { c.stop("third"); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("stopping a copy that waits for a place did not return")
	}
	close(gate)
	if err := stage("first", "slow"); !errors.Is(err, fault.Unavailable) {
		t.Fatalf("stage of the first volume after its store answered = %v, want its Unavailable", err)
	}
	if err := stage("second", "bad"); !errors.Is(err, fault.Invalid) {
		t.Fatalf("stage of the second volume once the first ended = %v, want its own Invalid", err)
	}
}

// TestCopiesOfAnotherNamespaceStart: with 2 places, a namespace that
// stages two copies runs one and the other waits, saying why; a copy of
// another namespace starts at once beside them.
func TestCopiesOfAnotherNamespaceStart(t *testing.T) {
	gate := make(chan struct{})
	defer close(gate)
	c := &Copy{
		Stores:   slowAndBad(gate),
		Root:     t.TempDir(),
		Parallel: 2,
		Log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	stage := func(id, tenant string) error {
		ctx, cancel := context.WithTimeout(context.Background(), stageMargin+time.Second)
		defer cancel()
		return c.Stage(ctx, Request{VolumeID: id, Tenant: tenant, Handle: volume.Handle{Spec: volume.Spec{Store: "slow", Bucket: "b-" + id}}}, &nodestate.Volume{})
	}
	if err := stage("a1", "team-a"); !errors.Is(err, fault.Pending) || strings.Contains(err.Error(), "waiting for a place") {
		t.Fatalf("first copy of team-a = %v, want Pending with its progress", err)
	}
	if err := stage("a2", "team-a"); !errors.Is(err, fault.Pending) || !strings.Contains(err.Error(), "waiting for a place: at most 2 copies run at once on this node (--copy-jobs), at most 1 of one namespace") {
		t.Fatalf("second copy of team-a = %v, want Pending waiting for a place, naming the share", err)
	}
	if err := stage("b1", "team-b"); !errors.Is(err, fault.Pending) || strings.Contains(err.Error(), "waiting for a place") {
		t.Fatalf("copy of team-b beside team-a's two = %v, want it running (Pending with its progress)", err)
	}
}

// TestCopyChargesItsBookkeepingToTheBudget: 2,000 empty objects with
// 900-byte names in 4 directories are charged 2,004 blocks as files and
// directories, and their copy's own files (listing, plan, manifest)
// about 2 MB each more. A budget of 1.5 MiB refuses the copy while it
// plans, naming its bookkeeping; one with room for the files alone
// refuses it when it asks for the whole copy; one with room for both
// takes it and then holds the files and the manifest, not the plan
// deleted with the copy, also when another volume's kept copy filled the
// budget (it is evicted). A refused copy holds what it held before (none,
// or a kept copy's 64 KiB), so its retry starts from where it began.
func TestCopyChargesItsBookkeepingToTheBudget(t *testing.T) {
	ctx := context.Background()
	mem, err := rfs.NewFs(ctx, ":memory:bookkeeping")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = operations.Purge(ctx, mem, "") })
	long := strings.Repeat("n", 200)
	for i := range 2000 {
		info := object.NewStaticObjectInfo(fmt.Sprintf("%s/%s/%s/%s/%04d", long, long, long, long, i), time.Now(), 0, true, nil, mem)
		if _, err := mem.Put(ctx, strings.NewReader(""), info); err != nil {
			t.Fatal(err)
		}
	}
	var st unix.Statfs_t
	if err := unix.Statfs(t.TempDir(), &st); err != nil {
		t.Fatal(err)
	}
	files := 2004 * min(max(st.Frsize, 512), 64<<10)
	const listing = "for the copy's listing, plan and manifest"
	for _, tc := range []struct {
		budget, before, otherKept int64
		refusal                   string // "" when it fits
	}{
		{3 << 19, 0, 0, listing}, {3 << 19, 64 << 10, 0, listing}, {files + 64<<10, 0, 0, "this volume needs"},
		{files + 16<<20, 0, 0, ""}, {files + 16<<20, 0, files + 16<<20 - 64<<10, ""},
	} {
		root := t.TempDir()
		disk, err := budget.Open(filepath.Join(root, "ledger.json"), budget.Options{Fixed: tc.budget})
		if err != nil {
			t.Fatal(err)
		}
		disk.Name = "node disk"
		c := &Copy{
			Stores: store.Registry{"mem": {Rclone: func(store.Secrets, string) (map[string]string, error) {
				return map[string]string{"type": "memory"}, nil
			}}},
			Root: filepath.Join(root, "copies"),
			Disk: disk,
			Log:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		}
		t.Cleanup(func() { _ = RemoveCopy(c.dir("v")) })
		for id, n := range map[string]int64{"v": tc.before, "other": tc.otherKept} {
			if n == 0 {
				continue
			}
			if err := os.MkdirAll(c.dir(id), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := disk.Reserve(id, n, c.dir(id)); err != nil {
				t.Fatal(err)
			}
			if err := disk.Keep(id); err != nil {
				t.Fatal(err)
			}
		}
		req := Request{VolumeID: "v", Handle: volume.Handle{Spec: volume.Spec{Store: "mem", Bucket: "bookkeeping", Mode: volume.ModeCopy}}, Flags: volume.MountFlags{ReadOnly: true}}
		res, err := c.run(ctx, req, &copier.Progress{})
		held, _ := disk.Get("v")
		if tc.refusal != "" {
			if !errors.Is(err, fault.Exhausted) || !strings.Contains(err.Error(), "node's budget is") || !strings.Contains(err.Error(), tc.refusal) ||
				tc.refusal != listing && strings.Contains(err.Error(), listing) {
				t.Fatalf("copy of 2,000 long names in a budget of %d = %v, want the budget's refusal naming %q", tc.budget, err, tc.refusal)
			}
			if held.Bytes != tc.before {
				t.Fatalf("a refused copy holds %d bytes of the budget, want the %d it held before", held.Bytes, tc.before)
			}
			continue
		}
		if err != nil {
			t.Fatalf("copy in a budget of %d: %v", tc.budget, err)
		}
		if res.Files != 2000 || res.DiskBytes != files || res.ManifestBytes < 2000*800 || held.Bytes != res.DiskBytes+res.ManifestBytes {
			t.Fatalf("copied %d files (%d bytes of blocks), manifest %d bytes; the volume holds %d, want the files (%d) and the manifest", res.Files, res.DiskBytes, res.ManifestBytes, held.Bytes, files)
		}
		if _, err := os.Stat(c.dir("other")); tc.otherKept > 0 && !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("another volume's kept copy filling the budget was not evicted for the copy: %v", err)
		}
	}
}
