// Package vfstest runs rclone's real VFS cache over its local backend (the
// "bucket" is a directory), for tests of code that relies on how rclone's
// cache behaves on disk: nothing here imitates rclone.
package vfstest

import (
	"context"
	"sync"
	"testing"
	"time"

	_ "github.com/rclone/rclone/backend/local" // the "bucket" is a directory
	rfs "github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/config"
	"github.com/rclone/rclone/vfs"
	"github.com/rclone/rclone/vfs/vfscommon"
)

// Env is a remote directory and a cache directory for one test.
type Env struct {
	Remote, Cache string
	F             rfs.Fs
}

// New makes both directories, points rclone's cache directory (a
// process-wide setting) at the new one and opens the remote.
func New(t testing.TB) Env {
	t.Helper()
	e := Env{Remote: t.TempDir(), Cache: t.TempDir()}
	if err := config.SetCacheDir(e.Cache); err != nil {
		t.Fatal(err)
	}
	f, err := rfs.NewFs(context.Background(), e.Remote)
	if err != nil {
		t.Fatal(err)
	}
	e.F = f
	return e
}

// VFS is a VFS whose Stop (a server dying: pending uploads stay in the
// cache) may be called early; the test's cleanup calls it otherwise.
type VFS struct {
	*vfs.VFS
	Stop func()
}

// Start opens a VFS over the cache in full cache mode without handle
// caching (rclone saves an item's metadata at each last close), as the
// FUSE server runs MOUNT_CACHED, with the given write-back delay.
func (e Env) Start(t testing.TB, writeBack time.Duration) VFS {
	t.Helper()
	o := vfscommon.Opt
	o.CacheMode = vfscommon.CacheModeFull
	o.WriteBack = rfs.Duration(writeBack)
	o.HandleCaching = 0
	v := vfs.New(context.Background(), e.F, &o)
	stop := sync.OnceFunc(v.Shutdown)
	t.Cleanup(stop)
	return VFS{v, stop}
}
