package stage

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bucket-csi/bucket-csi/pkg/budget"
	"github.com/bucket-csi/bucket-csi/pkg/copier"
	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/mountpoint"
	"github.com/bucket-csi/bucket-csi/pkg/nodestate"
	"github.com/bucket-csi/bucket-csi/pkg/redact"
	"github.com/bucket-csi/bucket-csi/pkg/remotefs"
	"github.com/bucket-csi/bucket-csi/pkg/store"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// Copy stages COPY volumes: the bucket (or prefix) is downloaded to node
// disk, then bind-mounted at the staging path. Writes stay local. A copy
// runs in the background: while it runs, Stage answers fault.Pending with
// its progress, and the retry that finds it finished publishes it. A copy
// that failed answers its error once (NotFound for a missing bucket,
// Denied for refused credentials, Unavailable for an unreachable store,
// Exhausted when it cannot fit); the next Stage starts a new copy, which
// resumes from the files already fetched (after an error kubelet takes as
// final, as a kept copy: see Abandon).
type Copy struct {
	Stores store.Registry
	// Root holds one directory per volume: data/ and its manifest.
	Root string
	// Keep keeps copies after unstage, so a later stage of the same volume
	// on this node fetches only what changed.
	Keep bool
	// Disk is the node disk budget: a copy reserves its whole size before
	// it downloads, and holds it until unstage; a kept copy holds it until
	// it is evicted to make room for a volume being staged.
	Disk *budget.Ledger
	// WriteSpace is the room (bytes) pods get for writes into a writable
	// COPY volume, reserved with the copy (copywrites.go); 0 takes
	// min(DefaultWriteSpace, budget/16).
	WriteSpace int64
	Options    copier.Options
	// Parallel is the most copies that run at once on the node
	// (DefaultParallel when 0). A copy holds up to about 150 MiB of the
	// plugin's memory while it lists and plans (copier: the objects it
	// holds, its sort buffer, its workers' buffers), so many volumes
	// staged together, by one tenant too, would take the plugin past its
	// memory limit; the others wait for a place, their Stage answering
	// Pending that says so. One namespace (Request.Tenant) runs at most
	// Parallel-1 of them, and freed places go to the namespaces running
	// fewest (places.go).
	Parallel int
	Log      *slog.Logger
	// Redact, if set, is the mask of this process's log: each running
	// copy adds its secrets, since rclone logs into it.
	Redact *redact.Set

	// mu guards jobs (and the making of places), for a map lookup or
	// update: it is never held across a network call or disk work, so
	// volumes never wait on each other; one volume has at most one job.
	mu     sync.Mutex
	jobs   map[string]*copyJob
	places *places // the running copies' places (Parallel), made by start
	// last holds the figures of each volume's last finished copy until
	// the volume is unstaged.
	last map[string]CopyFigures
}

// CopyFigures are a volume's copy figures for metrics.
type CopyFigures struct {
	copier.Figures
	// Complete is set once the copy finished and succeeded; Running
	// while it runs, or waits for a place (then Waiting too).
	Complete, Running, Waiting bool
}

// Progress returns the volume's running copy's figures, or its last
// finished one's while it stays staged; ok is false when neither is known
// (never copied since this plugin started, or unstaged).
func (c *Copy) Progress(volumeID string) (f CopyFigures, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if job, ok := c.jobs[volumeID]; ok {
		return CopyFigures{Figures: job.progress.Snapshot(), Running: true, Waiting: job.waiting.Load()}, true
	}
	f, ok = c.last[volumeID]
	return f, ok
}

// Figures are the volume's copy figures (Progress), if known.
func (c *Copy) Figures(_ context.Context, rec *nodestate.Volume) Figures {
	if f, ok := c.Progress(rec.VolumeID); ok {
		return Figures{Copy: &f}
	}
	return Figures{}
}

// DefaultParallel is Copy.Parallel's default.
const DefaultParallel = 4

type copyJob struct {
	done     chan struct{}
	waiting  atomic.Bool // for a place among the running copies
	cancel   context.CancelFunc
	progress copier.Progress
	result   copier.Result
	err      error
}

const stageMargin = 5 * time.Second

// skipExamples is how many left-out keys the log line names.
const skipExamples = 5

func (c *Copy) dir(volumeID string) string {
	return filepath.Join(c.Root, volume.DirName(volumeID))
}

// Stage starts or joins the volume's copy, and publishes it at the staging
// path once it is complete: read-only, or writable over its write space
// (copywrites.go). A failed copy is never published. No copy starts while
// pods of an earlier stage still write through the write space
// (writesInUse).
func (c *Copy) Stage(ctx context.Context, req Request, rec *nodestate.Volume) error {
	if !c.hasJob(req.VolumeID) {
		if err := c.writesInUse(req.VolumeID); err != nil {
			return err
		}
	}
	job := c.start(req)
	wait := time.Duration(1<<63 - 1)
	if d, ok := ctx.Deadline(); ok {
		wait = time.Until(d) - stageMargin
	}
	timer := time.NewTimer(max(wait, 0))
	defer timer.Stop()
	select {
	case <-job.done:
	case <-timer.C:
		return c.pending(req, job)
	case <-ctx.Done():
		return c.pending(req, job)
	}
	c.forget(req.VolumeID, job)
	if job.err != nil {
		return job.err
	}
	res := job.result
	if res.SkippedCount > 0 {
		var ex []string
		for _, s := range res.Skipped[:min(len(res.Skipped), skipExamples)] {
			ex = append(ex, fmt.Sprintf("%q (%s)", s.Key, s.Reason))
		}
		c.Log.Warn("COPY left out objects that cannot be fetched or be files", "volume", req.VolumeID, "count", res.SkippedCount, "examples", strings.Join(ex, "; "))
	}
	c.Log.Info("copy complete", "volume", req.VolumeID, "files", res.Files, "bytes", res.Bytes, "downloaded", res.Downloaded, "downloadedBytes", res.DownloadedBytes, "skipped", res.SkippedCount)
	if req.Flags.ReadOnly {
		// A write space from a writable stage before holds no reservation now.
		if err := c.dropWrites(req.VolumeID, false); err != nil {
			return err
		}
		return mountpoint.Bind(filepath.Join(c.dir(req.VolumeID), "data"), req.StagingPath, true)
	}
	return c.mountWritable(req.VolumeID, req.StagingPath)
}

// hasJob reports whether the volume has a copy job running, or done and
// not yet forgotten by the Stage that publishes it.
func (c *Copy) hasJob(volumeID string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.jobs[volumeID]
	return ok
}

// pending is Stage's answer while job runs or waits for a place.
func (c *Copy) pending(req Request, job *copyJob) error {
	if job.waiting.Load() {
		return fmt.Errorf("%w: copying %s: waiting for a place: at most %d copies run at once on this node (--copy-jobs), at most %d of one namespace", fault.Pending, req.Handle.Bucket, c.places.n, c.places.perTenant())
	}
	return fmt.Errorf("%w: copying %s: %s so far", fault.Pending, req.Handle.Bucket, job.progress.String())
}

// start returns the running job of the volume or starts one. Everything
// slow (the store's options, directories, the copy) runs in the job.
func (c *Copy) start(req Request) *copyJob {
	c.mu.Lock()
	defer c.mu.Unlock()
	if job, ok := c.jobs[req.VolumeID]; ok {
		return job
	}
	ctx, cancel := context.WithCancel(context.Background())
	job := &copyJob{done: make(chan struct{}), cancel: cancel}
	if c.jobs == nil {
		c.jobs = map[string]*copyJob{}
	}
	c.jobs[req.VolumeID] = job
	if c.places == nil {
		c.places = newPlaces(cmp.Or(c.Parallel, DefaultParallel))
	}
	places := c.places
	// A job that finds no place free says it waits (pending) until one is.
	ticket := places.join(req.Tenant)
	queued := !ticket.held()
	job.waiting.Store(queued)
	go func() {
		defer close(job.done)
		defer cancel()
		if queued {
			if job.err = places.wait(ctx, ticket); job.err != nil {
				return
			}
		}
		defer places.leave(ticket)
		if job.err = ctx.Err(); job.err != nil {
			return // stopped as the place came free
		}
		job.waiting.Store(false)
		// Engine errors leave the copy masked: the error Stage returns
		// and the reasons of left-out keys it logs. The masks join the
		// process log's only while the copy runs, so copies waiting for
		// a place add nothing every log line is checked against.
		red := redact.FromSecrets(req.Secrets)
		unmask := c.Redact.Add(red)
		defer unmask()
		job.result, job.err = c.run(ctx, req, &job.progress)
		job.err = red.Error(job.err)
		for i := range job.result.Skipped {
			job.result.Skipped[i].Reason = red.String(job.result.Skipped[i].Reason)
		}
	}()
	return job
}

// run copies the volume's bucket (or prefix) into its directory.
func (c *Copy) run(ctx context.Context, req Request, progress *copier.Progress) (copier.Result, error) {
	b, err := c.Stores.Get(req.Handle.Store)
	if err != nil {
		return copier.Result{}, err
	}
	remote, err := b.Rclone(req.Secrets, req.Handle.Location)
	if err != nil {
		return copier.Result{}, err
	}
	dir := c.dir(req.VolumeID)
	// A kept copy about to be used again is never evicted.
	if err := c.Disk.Claim(req.VolumeID); err != nil {
		return copier.Result{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return copier.Result{}, err
	}
	private := filepath.Join(dir, "private")
	defer os.RemoveAll(private)
	path := req.Handle.Bucket
	if req.Handle.Prefix != "" {
		path += "/" + req.Handle.Prefix
	}
	f, err := remotefs.Open(copier.Connections(ctx, c.Options), remote, "copy"+filepath.Base(dir), private, path)
	if err != nil { // of a fault kind, e.g. a prefix that is also an object's name
		return copier.Result{}, fmt.Errorf("opening %s: %w", req.Handle.Bucket, err)
	}
	opt := c.Options
	opt.HideMetaDir = req.Handle.Prefix == ""
	// The copy, its own bookkeeping files and a writable volume's write
	// space must fit the disk and the node's budget, which it then holds
	// until unstage (or eviction of a kept copy). The bookkeeping grows
	// the volume's reservation before it is written (Grow), so a listing
	// of millions of keys is refused before it fills the disk.
	var writes int64
	if !req.Flags.ReadOnly {
		writes = c.writesReserve(req.VolumeID)
	}
	opt.Bookkeeping = func(ctx context.Context, at string, need, want int64) (int64, error) {
		want, err := copier.FreeUpTo(ctx, at, need, want)
		if err != nil {
			return 0, err
		}
		got, err := c.Disk.Grow(req.VolumeID, need, want, dir)
		if err != nil {
			return 0, fmt.Errorf("%w (for the copy's listing, plan and manifest)", err)
		}
		return got, nil
	}
	// After the copy, done or not, its listing and plan are gone: the
	// volume then holds at most what it held before (kept files, an
	// earlier try's), or once planned, its files, manifest and write
	// space. A failed copy's retry must not start from its peak.
	before, _ := c.Disk.Get(req.VolumeID)
	planned := false
	var attached <-chan writesAttached // the write space's, once reserved
	opt.Space = func(ctx context.Context, dest string, s copier.Sizes) error {
		total, need := s.Plus(writes)
		if err := copier.FreeSpace(ctx, dest, total, need, s.Files); err != nil {
			return err
		}
		if err := c.Disk.Reserve(req.VolumeID, total, dir); err != nil {
			return err
		}
		planned = true
		if !req.Flags.ReadOnly {
			attached = c.attachWritesAsync(req.VolumeID)
		}
		return nil
	}
	data := filepath.Join(dir, "data")
	if opt.HideMetaDir {
		// The copier never sees the guard presentCopy puts there.
		if err := unguardMeta(data); err != nil {
			return copier.Result{}, err
		}
	}
	res, err := copier.Copy(ctx, f, data, filepath.Join(dir, "manifest.jsonl"), opt, progress)
	if err == nil {
		// In the job, not in Stage: the walk of a large copy may outlast
		// one NodeStage call.
		err = presentCopy(data, req.Flags, opt.HideMetaDir, c.Log)
	}
	// Waited for, so never left running into an Unstage's removal of it.
	removed, err := c.settleWrites(req.VolumeID, attached, err)
	after := before.Bytes
	if planned {
		after = res.DiskBytes + res.ManifestBytes
		if !removed {
			after += writes
		}
	}
	if now, ok := c.Disk.Get(req.VolumeID); ok && now.Bytes > after {
		if serr := c.Disk.Shrink(req.VolumeID, now.Bytes-after); serr != nil {
			err = errors.Join(err, serr)
		}
	}
	return res, err
}

// forget drops a finished job so the next stage starts afresh.
func (c *Copy) forget(volumeID string, job *copyJob) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.jobs[volumeID] == job {
		delete(c.jobs, volumeID)
		if c.last == nil {
			c.last = map[string]CopyFigures{}
		}
		c.last[volumeID] = CopyFigures{Figures: job.progress.Snapshot(), Complete: job.err == nil}
	}
}

// stop cancels a running copy of the volume and waits for it.
func (c *Copy) stop(volumeID string) {
	c.mu.Lock()
	job := c.jobs[volumeID]
	c.mu.Unlock()
	if job != nil {
		job.cancel()
		<-job.done
		c.forget(volumeID, job)
	}
}

// Unstage stops a running copy, unmounts the copy, drops its write space
// and removes the copy (unless copies are kept).
func (c *Copy) Unstage(ctx context.Context, rec *nodestate.Volume) (Unstaged, error) {
	c.stop(rec.VolumeID)
	c.mu.Lock()
	delete(c.last, rec.VolumeID)
	c.mu.Unlock()
	if err := c.Release(ctx, rec); err != nil {
		return Unstaged{}, err
	}
	if err := c.dropWrites(rec.VolumeID, c.Keep); err != nil {
		return Unstaged{}, err
	}
	if c.Keep {
		return Unstaged{}, c.Disk.Keep(rec.VolumeID)
	}
	if err := RemoveCopy(c.dir(rec.VolumeID)); err != nil {
		return Unstaged{}, err
	}
	return Unstaged{}, c.Disk.Release(rec.VolumeID)
}

// Abandon lets a copy whose stage failed with an answer kubelet takes as
// final go, keeping what it fetched: the copy stays as a kept one (as with
// Keep), which the next stage of the volume resumes from and the node's
// disk budget may evict, so an error that comes back at every stage does
// not make each one download the bucket again. Its write space goes. A
// copy that holds nothing of the disk budget (nothing planned) is removed.
// It always lets go (true) unless it fails.
func (c *Copy) Abandon(ctx context.Context, rec *nodestate.Volume) (bool, error) {
	c.stop(rec.VolumeID)
	c.mu.Lock()
	delete(c.last, rec.VolumeID)
	c.mu.Unlock()
	if err := c.Release(ctx, rec); err != nil {
		return false, err
	}
	if err := c.dropWrites(rec.VolumeID, true); err != nil {
		return false, err
	}
	if r, ok := c.Disk.Get(rec.VolumeID); !ok || r.Bytes == 0 {
		if err := RemoveCopy(c.dir(rec.VolumeID)); err != nil {
			return false, err
		}
		return true, c.Disk.Release(rec.VolumeID)
	}
	return true, c.Disk.Keep(rec.VolumeID)
}

// Release unmounts the copy; the copy, a copy still running and the write
// space carry on for the next Stage to join.
func (c *Copy) Release(_ context.Context, rec *nodestate.Volume) error {
	return mountpoint.Unmount(rec.StagingPath)
}

// Healthy reports whether the copy is still bind-mounted at staging.
func (c *Copy) Healthy(rec *nodestate.Volume) bool {
	ok, err := mountpoint.Mounted(rec.StagingPath)
	return err == nil && ok
}

var (
	_ Stager    = (*Copy)(nil)
	_ Reporter  = (*Copy)(nil)
	_ Tracker   = (*Copy)(nil)
	_ Abandoner = (*Copy)(nil)
)
