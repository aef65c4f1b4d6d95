package stage

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/bucket-csi/bucket-csi/pkg/mountpoint"
	"github.com/bucket-csi/bucket-csi/pkg/nodestate"
)

// Abandon lets a stage that failed with an answer kubelet takes as final
// go when the volume's cache holds no file: no upload can then be
// pending (the volume's first stage on this node, say, whose server
// refused to start). It stops a server the stage left, removes the cache
// and its image and releases the stage's disk, memory and server
// reservations (true). A cache that holds files, or whose image is not
// mounted to look into, is kept with the whole failed stage for the next
// one to upload from (false), as before: a drain server started from the
// config that failed would fail the same way.
//
// The failed stage's saved server config goes first: should the rest fail
// (answered Unavailable, so kubelet unstages later), the unstage then
// finds a server that never started and removes the cache, instead of
// starting a drain server from that config, which would fail as the
// stage did.
func (c *Cached) Abandon(ctx context.Context, rec *nodestate.Volume) (bool, error) {
	if held, err := c.holdsFiles(rec.VolumeID); err != nil || held {
		return false, err
	}
	if err := os.Remove(filepath.Join(rec.StateDir, savedConfig)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	// Release stops the server and unmounts the staging path (the
	// server's mount point, or the drain's and then the staging path).
	if err := c.Release(ctx, rec); err != nil {
		return false, err
	}
	return true, c.removeCache(rec.VolumeID)
}

// holdsFiles reports whether the volume's cache may hold a file: anything
// but a directory in its directory outside lost+found (rclone's data and
// metadata files, the write journal), an image that is not mounted (what
// it holds is out of sight) or one that cannot be looked at.
func (c *Cached) holdsFiles(volumeID string) (bool, error) {
	dir := c.CacheDir(volumeID)
	_, err := os.Stat(c.imagePath(volumeID))
	switch {
	case err == nil:
		mounted, err := mountpoint.Mounted(dir)
		if err != nil || !mounted {
			return true, err
		}
	case !errors.Is(err, os.ErrNotExist):
		return true, err
	}
	found := errors.New("found")
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		switch {
		case errors.Is(err, os.ErrNotExist) && path == dir:
			return filepath.SkipAll
		case err != nil:
			return err
		case d.IsDir() && d.Name() == "lost+found" && filepath.Dir(path) == dir:
			return filepath.SkipDir
		case !d.IsDir():
			return found
		}
		return nil
	})
	if errors.Is(err, found) {
		return true, nil
	}
	return false, err
}

var _ Abandoner = (*Cached)(nil)
