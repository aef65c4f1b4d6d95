package stage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	rfs "github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/cache"
	"github.com/rclone/rclone/fs/config"

	"github.com/bucket-csi/bucket-csi/pkg/budget"
	"github.com/bucket-csi/bucket-csi/pkg/copier"
	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/mountpoint"
	"github.com/bucket-csi/bucket-csi/pkg/nodestate"
	"github.com/bucket-csi/bucket-csi/pkg/store"
)

// Copy stages COPY volumes: the bucket (or prefix) is downloaded to node
// disk, then bind-mounted at the staging path. Writes stay local. A copy
// runs in the background: while it runs, Stage answers fault.Pending with
// its progress, and the retry that finds it finished publishes it.
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
	Disk    *budget.Ledger
	Options copier.Options
	Log     *slog.Logger

	mu   sync.Mutex
	jobs map[string]*copyJob
}

type copyJob struct {
	done     chan struct{}
	cancel   context.CancelFunc
	progress copier.Progress
	result   copier.Result
	err      error
}

const stageMargin = 5 * time.Second

func (c *Copy) dir(volumeID string) string {
	sum := sha256.Sum256([]byte(volumeID))
	return filepath.Join(c.Root, hex.EncodeToString(sum[:12]))
}

// Stage starts or joins the volume's copy, and publishes it at the staging
// path once it is complete. A failed copy is never published.
func (c *Copy) Stage(ctx context.Context, req Request, rec *nodestate.Volume) error {
	job, err := c.start(req)
	if err != nil {
		return err
	}
	wait := time.Duration(1<<63 - 1)
	if d, ok := ctx.Deadline(); ok {
		wait = time.Until(d) - stageMargin
	}
	timer := time.NewTimer(max(wait, 0))
	defer timer.Stop()
	select {
	case <-job.done:
	case <-timer.C:
		return fmt.Errorf("%w: copying %s: %s so far", fault.Pending, req.Handle.Bucket, job.progress.String())
	case <-ctx.Done():
		return fmt.Errorf("%w: copying %s: %s so far", fault.Pending, req.Handle.Bucket, job.progress.String())
	}
	c.forget(req.VolumeID, job)
	if job.err != nil {
		return job.err
	}
	res := job.result
	if n := len(res.Skipped); n > 0 {
		c.Log.Warn("COPY left out objects that cannot be files", "volume", req.VolumeID, "count", n, "first", res.Skipped[0].Key, "reason", res.Skipped[0].Reason)
	}
	c.Log.Info("copy complete", "volume", req.VolumeID, "files", res.Files, "bytes", res.Bytes, "downloaded", res.Downloaded, "downloadedBytes", res.DownloadedBytes)
	return mountpoint.Bind(filepath.Join(c.dir(req.VolumeID), "data"), req.StagingPath, req.Flags.ReadOnly)
}

// start returns the running job of the volume or starts one.
func (c *Copy) start(req Request) (*copyJob, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if job, ok := c.jobs[req.VolumeID]; ok {
		return job, nil
	}
	b, err := c.Stores.Get(req.Handle.Store)
	if err != nil {
		return nil, err
	}
	remote, err := b.Rclone(req.Secrets, req.Handle.Location)
	if err != nil {
		return nil, err
	}
	dir := c.dir(req.VolumeID)
	// A kept copy about to be used again is never evicted.
	if err := c.Disk.Claim(req.VolumeID); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	job := &copyJob{done: make(chan struct{}), cancel: cancel}
	if c.jobs == nil {
		c.jobs = map[string]*copyJob{}
	}
	c.jobs[req.VolumeID] = job
	section := "copy" + filepath.Base(dir)
	go func() {
		defer close(job.done)
		defer cancel()
		private := filepath.Join(dir, "private")
		defer os.RemoveAll(private)
		opts, err := store.Materialize(remote, private)
		if err != nil {
			job.err = err
			return
		}
		for k, v := range opts {
			config.FileSetValue(section, k, v)
		}
		defer func() { config.Data().DeleteSection(section); cache.ClearConfig(section) }()
		path := section + ":" + req.Handle.Bucket
		if req.Handle.Prefix != "" {
			path += "/" + req.Handle.Prefix
		}
		f, err := rfs.NewFs(ctx, path)
		if err != nil {
			job.err = fmt.Errorf("%w: opening %s: %v", fault.Unavailable, req.Handle.Bucket, err)
			return
		}
		opt := c.Options
		opt.HideMetaDir = req.Handle.Prefix == ""
		opt.Reserve = func(total int64) error { return c.Disk.Reserve(req.VolumeID, total, dir) }
		job.result, job.err = copier.Copy(ctx, f, filepath.Join(dir, "data"), filepath.Join(dir, "manifest.jsonl"), opt, &job.progress)
	}()
	return job, nil
}

// forget drops a finished job so the next stage starts afresh.
func (c *Copy) forget(volumeID string, job *copyJob) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.jobs[volumeID] == job {
		delete(c.jobs, volumeID)
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

// Unstage stops a running copy, unmounts the copy and removes it (unless
// copies are kept).
func (c *Copy) Unstage(ctx context.Context, rec *nodestate.Volume) error {
	c.stop(rec.VolumeID)
	if err := c.Release(ctx, rec); err != nil {
		return err
	}
	if c.Keep {
		return c.Disk.Keep(rec.VolumeID)
	}
	if err := os.RemoveAll(c.dir(rec.VolumeID)); err != nil {
		return err
	}
	return c.Disk.Release(rec.VolumeID)
}

// Release unmounts the copy; the copy, and a copy still running, carry on
// for the next Stage to join.
func (c *Copy) Release(_ context.Context, rec *nodestate.Volume) error {
	return mountpoint.Unmount(rec.StagingPath)
}

// Healthy reports whether the copy is still bind-mounted at staging.
func (c *Copy) Healthy(rec *nodestate.Volume) bool {
	ok, err := mountpoint.Mounted(rec.StagingPath)
	return err == nil && ok
}

var _ Stager = (*Copy)(nil)
