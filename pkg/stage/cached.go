package stage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/bucket-csi/bucket-csi/pkg/budget"
	"github.com/bucket-csi/bucket-csi/pkg/diskimage"
	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/mounter"
	"github.com/bucket-csi/bucket-csi/pkg/mountpoint"
	"github.com/bucket-csi/bucket-csi/pkg/nodestate"
	"github.com/bucket-csi/bucket-csi/pkg/store"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// Cached stages MOUNT_CACHED volumes: a FUSE mount over an on-disk VFS
// cache whose writes are uploaded after close, in close order. It never
// releases a volume while anything is pending upload.
type Cached struct {
	Supervisor *mounter.Supervisor
	Stores     store.Registry
	Settings   Settings
	// CacheRoot holds one cache directory per volume.
	CacheRoot string
	// CacheMaxSize bounds each volume's cache (bytes); 0 takes
	// DefaultCacheMaxSize of the disk budget (see CacheLimit).
	CacheMaxSize int64
	// Disk is the node disk budget: a volume reserves its cache limit
	// while staged.
	Disk *budget.Ledger
	// Memory is the node's read-ahead memory budget (Mount's): a volume
	// reserves PrefetchMemory for its small-file prefetch while staged.
	Memory *budget.Ledger
	// Servers caps the node's FUSE servers (Mount's): a volume holds one
	// unit while staged, and until its cache is drained (nil: no cap).
	Servers *budget.Ledger
	// Transfers is the number of parallel uploads per volume (default 1).
	Transfers int
	// WriteBack is the delay between last close and upload (default 1s).
	WriteBack time.Duration
}

// Files in the volume's private state directory.
const (
	controlSocket = "ctl.sock"
	savedConfig   = "mounter.json" // 0600: holds credentials
	drainMount    = "drain"
	drainMargin   = 5 * time.Second
)

// PrefetchMemory is the read-ahead memory a MOUNT_CACHED server asks for:
// small files fetched ahead in listing order (readahead's SmallBudget).
// The node gives it while it has it, then what is left down to
// MinServerMemory, then none: the server then fetches nothing ahead.
const PrefetchMemory = 32 << 20

// CacheDir returns the cache directory of a volume. It depends on the
// volume ID only, so every server started for the volume (after a crash, a
// plugin upgrade, a credential rotation) finds the same pending uploads.
func (c *Cached) CacheDir(volumeID string) string {
	return filepath.Join(c.CacheRoot, volume.DirName(volumeID))
}

// imagePath is the file holding the filesystem of a volume's cache
// directory (diskimage), beside it.
func (c *Cached) imagePath(volumeID string) string {
	return c.CacheDir(volumeID) + ".img"
}

// attachCache mounts the volume's cache image on its cache directory,
// making an image of the cache limit when there is none. The cache is a
// filesystem of its own, of the reserved size: a pod writing faster than
// uploads drain, a store refusing uploads or a huge object read through
// the cache fill the volume's image, never the node's disk. A cache from
// before images stays a plain directory. Every server of the volume
// starts after it (Stage, Repair, the drain server): one started on the
// bare directory would write beside the image and miss its pending
// uploads.
func (c *Cached) attachCache(volumeID string) error {
	err := diskimage.Attach(c.imagePath(volumeID), c.CacheDir(volumeID), c.CacheLimit())
	if err != nil && !errors.Is(err, diskimage.ErrOutsideImage) {
		return fmt.Errorf("cache filesystem: %w", err)
	}
	return nil
}

// Stage checks that the volume's credentials can list the bucket
// (checkAccess), takes one of the node's FUSE server places (Servers:
// fault.Exhausted when all are taken), mounts the volume's cache image
// (of the reserved size) on its cache directory, then starts the FUSE
// server with that cache.
// Uploads left pending by an earlier server for this volume resume.
func (c *Cached) Stage(ctx context.Context, req Request, rec *nodestate.Volume) error {
	if err := checkAccess(ctx, c.Stores, req); err != nil {
		return err
	}
	cfg, err := fuseConfig(req, c.Stores, c.Settings)
	if err != nil {
		return err
	}
	cfg.Cache, cfg.Durable = true, true
	cfg.Passthrough = true // where the kernel offers it
	cfg.CacheDir = c.CacheDir(req.VolumeID)
	cfg.CacheMaxSize = c.CacheLimit()
	_, held := c.Servers.Get(req.VolumeID) // a cache still to drain keeps its place
	if err := c.Servers.Reserve(req.VolumeID, 1, ""); err != nil {
		return err
	}
	// What the image takes: the limit (at least diskimage.MinSize), or
	// more for an image made before the limit was lowered.
	size := max(cfg.CacheMaxSize, diskimage.MinSize, diskimage.Size(c.imagePath(req.VolumeID)))
	if err := c.Disk.Reserve(req.VolumeID, size, cfg.CacheDir); err != nil {
		if !held {
			_ = c.Servers.Release(req.VolumeID)
		}
		return err
	}
	tune := req.Handle.Profile.Tuning()
	cfg.Transfers = max(volume.Or(tune.Transfers, c.Transfers), 1)
	cfg.WriteBack = volume.Or(tune.WriteBack, c.WriteBack)
	cfg.ServerWrites = tune.ServerWrites
	if cfg.WriteBack <= 0 {
		cfg.WriteBack = time.Second
	}
	if err := c.attachCache(req.VolumeID); err != nil {
		return err
	}
	share, err := c.Memory.ReserveUpTo(req.VolumeID, PrefetchMemory, MinServerMemory)
	if err != nil {
		return err
	}
	cfg.Prefetch, cfg.ReadAheadMemory = true, share
	if share == 0 && c.Memory != nil {
		cfg.ReadAheadMemory = -1
	}
	started, err := startFUSE(ctx, c.Supervisor, cfg, req.StateDir)
	if err != nil {
		// The cache and both reservations stay: the saved config (with
		// this share) may start a drain server at the unstage, and a
		// retry's reservation replaces this one. removeCache releases
		// them.
		return err
	}
	rec.Server = started
	return nil
}

// Unstage waits until every file is in the bucket, then unmounts, stops the
// server and removes the cache. While uploads are pending it answers
// fault.Pending (the volume stays mounted, the cache stays). A dead server's
// cache is drained by a private server started from the saved config; it is
// recorded in rec (Draining), which the caller saves on every outcome.
func (c *Cached) Unstage(ctx context.Context, rec *nodestate.Volume) (Unstaged, error) {
	return Unstaged{Flush: true}, c.flushAndStop(ctx, rec)
}

// flushAndStop is Unstage's work.
func (c *Cached) flushAndStop(ctx context.Context, rec *nodestate.Volume) error {
	if !rec.Server.Alive() {
		started, err := c.restartPrivately(ctx, rec)
		if err != nil {
			return err
		}
		if !started {
			// No saved config: the server never started, nothing written.
			if err := mountpoint.Unmount(rec.StagingPath); err != nil {
				return err
			}
			return c.removeCache(rec.VolumeID)
		}
	}
	if _, err := mounter.WaitDrained(ctx, ControlSocket(rec), drainMargin); err != nil {
		return err
	}
	killed, err := mounter.Stop(ctx, rec.Server, c.mountPoint(rec), stopGrace)
	if err != nil {
		return err
	}
	if killed {
		// It may have left work in its cache: keep it, and let the retry
		// drain it with a fresh server.
		return fmt.Errorf("%w: the FUSE server had to be killed; its cache is kept and drained on the retry", fault.Pending)
	}
	if err := mountpoint.Unmount(rec.StagingPath); err != nil {
		return err
	}
	return c.removeCache(rec.VolumeID)
}

// removeCache unmounts and removes the volume's cache and its image and
// releases its disk, memory and server budgets.
func (c *Cached) removeCache(volumeID string) error {
	if err := diskimage.Remove(c.imagePath(volumeID), c.CacheDir(volumeID)); err != nil {
		return err
	}
	if err := c.Memory.Release(volumeID); err != nil {
		return err
	}
	if err := c.Servers.Release(volumeID); err != nil {
		return err
	}
	return c.Disk.Release(volumeID)
}

// DefaultCacheMaxSize is the most a volume's cache takes when
// CacheMaxSize is 0; CacheLimit also caps it at a quarter of the disk
// budget.
const DefaultCacheMaxSize = 10 << 30

// CacheLimit is the cache size limit of every volume, reserved from the
// disk budget: CacheMaxSize, or else min(10 GiB, budget/4).
func (c *Cached) CacheLimit() int64 {
	if c.CacheMaxSize > 0 {
		return c.CacheMaxSize
	}
	if c.Disk == nil {
		return DefaultCacheMaxSize
	}
	return min(DefaultCacheMaxSize, c.Disk.Budget()/4)
}

// mountPoint is where rec's server is mounted: the staging path, or the
// private drain mount.
func (c *Cached) mountPoint(rec *nodestate.Volume) string {
	if rec.Draining {
		return filepath.Join(rec.StateDir, drainMount)
	}
	return rec.StagingPath
}

// restartPrivately starts a server for a volume whose server died, on a
// private mount point, so its pending uploads can be drained. started is
// false when the server had never started (no saved config).
func (c *Cached) restartPrivately(ctx context.Context, rec *nodestate.Volume) (bool, error) {
	if err := mountpoint.Unmount(c.mountPoint(rec)); err != nil {
		return false, err
	}
	if err := mountpoint.Unmount(rec.StagingPath); err != nil {
		return false, err
	}
	if _, err := os.Stat(filepath.Join(rec.StateDir, savedConfig)); err == nil {
		// A server will start: on the cache image, never beside it.
		if err := c.attachCache(rec.VolumeID); err != nil {
			return false, err
		}
	}
	started, ok, err := restartFUSE(ctx, c.Supervisor, rec, filepath.Join(rec.StateDir, drainMount))
	if err != nil || !ok {
		return false, err
	}
	rec.Server, rec.Draining = started, true
	return true, nil
}

// Repair restarts a dead FUSE server in place; its pending uploads resume.
// A drain server in the way is stopped first: two servers must never share
// one cache.
func (c *Cached) Repair(ctx context.Context, rec *nodestate.Volume) error {
	if err := c.Release(ctx, rec); err != nil {
		return err
	}
	if err := c.attachCache(rec.VolumeID); err != nil {
		return err
	}
	return repairFUSE(ctx, c.Supervisor, rec)
}

// Release stops serving without draining: the cache, with its pending
// uploads, is kept for the next Stage or Repair.
func (c *Cached) Release(ctx context.Context, rec *nodestate.Volume) error {
	if _, err := mounter.Stop(ctx, rec.Server, c.mountPoint(rec), stopGrace); err != nil {
		return err
	}
	if rec.Draining {
		if err := mountpoint.Unmount(rec.StagingPath); err != nil {
			return err
		}
		rec.Draining = false
	}
	return nil
}

// Figures asks the FUSE server for its statistics (a drain server's too).
func (c *Cached) Figures(ctx context.Context, rec *nodestate.Volume) Figures {
	return fuseFigures(ctx, rec)
}

// Healthy reports whether the FUSE server runs at the staging path.
func (c *Cached) Healthy(rec *nodestate.Volume) bool { return rec.Server.Alive() && !rec.Draining }

// Check asks the FUSE server over its control socket: a server that does
// not answer is inaccessible, uploads being retried are degraded.
func (c *Cached) Check(ctx context.Context, rec *nodestate.Volume) []Condition {
	st, err := mounter.Query(ctx, ControlSocket(rec), false)
	switch {
	case err != nil:
		return []Condition{{Inaccessible: true, Reason: "ServerNotAnswering", Message: err.Error()}}
	case st.Retrying > 0:
		return []Condition{{Reason: "UploadsFailing", Message: st.String()}}
	}
	return nil
}

var (
	_ Stager   = (*Cached)(nil)
	_ Repairer = (*Cached)(nil)
	_ Checker  = (*Cached)(nil)
	_ Reporter = (*Cached)(nil)
)
