package cachejournal

import (
	"encoding/json"
	"os"
	"path"
	"path/filepath"
	"strings"

	rfs "github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/lib/encoder"
	"github.com/rclone/rclone/vfs/vfscache"
)

// Layout is where rclone's VFS cache keeps the items of one remote: a
// data file under Data and a metadata file under Meta for every cached
// file, at the file's path (vfscache.New's layout; TestRootsAreRclones
// pins it, and the FUSE server checks it against the VFS it opened).
type Layout struct {
	Data, Meta string
}

// LayoutOf returns the layout of the cache under cacheDir (as given to
// rclone's config.SetCacheDir) for the remote f (the Fs given to the VFS).
func LayoutOf(cacheDir string, f rfs.Fs) (Layout, error) {
	cacheDir, err := filepath.Abs(cacheDir) // as config.SetCacheDir
	if err != nil {
		return Layout{}, err
	}
	rel := toOSPath(cleanName(f.Name() + "/" + f.Root()))
	return Layout{Data: filepath.Join(cacheDir, "vfs", rel), Meta: filepath.Join(cacheDir, "vfsMeta", rel)}, nil
}

// DataPath is the data file of the file name (a VFS path).
func (l Layout) DataPath(name string) string { return filepath.Join(l.Data, toOSPath(name)) }

// MetaPath is the metadata file of the file name.
func (l Layout) MetaPath(name string) string { return filepath.Join(l.Meta, toOSPath(name)) }

// Info reads and decodes the metadata of the file name.
func (l Layout) Info(name string) (vfscache.Info, error) {
	var info vfscache.Info
	data, err := os.ReadFile(l.MetaPath(name))
	if err == nil {
		err = json.Unmarshal(data, &info)
	}
	return info, err
}

// cleanName is vfscache's clean: no leading or trailing slash, "" for the
// root.
func cleanName(name string) string {
	name = path.Clean(strings.Trim(name, "/"))
	if name == "." || name == "/" {
		return ""
	}
	return name
}

// toOSPath is vfscache's toOSPath: a remote path in rclone's standard
// encoding to a path on this OS.
func toOSPath(name string) string {
	return filepath.FromSlash(encoder.OS.FromStandardPath(name))
}
