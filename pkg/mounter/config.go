// Package mounter runs one volume's FUSE server as its own process and
// supervises it from the node plugin.
//
// The node plugin (Start) runs the bucket-csi-mounter binary, installed
// next to its own, in a new session (or asks a mounter host to, see host.go), so the FUSE
// server is not killed with the plugin: a plugin restart or upgrade leaves
// every mount serving. The volume's Config, credentials included, travels
// over the child's stdin and never appears on its command line or in its
// environment; the only files holding it are 0600 in the volume's 0700
// state directory (the saved config that lets a dead server be restarted,
// and credential files a backend must read). The child (Serve)
// mounts with rclone's VFS over go-fuse, reports "ok" or an error on fd 3,
// and serves until the mount point is unmounted or it receives SIGTERM.
package mounter

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// Config is everything the FUSE server process needs for one volume.
type Config struct {
	// VolumeID is the CSI volume ID; it names the rclone remote section so
	// the VFS cache directory stays the same across restarts and credential
	// rotations.
	VolumeID string `json:"volumeID"`
	// MountPoint is the absolute path to mount on (the staging path).
	MountPoint string `json:"mountPoint"`
	// Remote holds the rclone backend options, credentials included.
	Remote map[string]string `json:"remote"`
	// Redact are the volume's secret values (redact.Values of its
	// store.Secrets): the server masks them, and every form of them, in its
	// status line and its log, whatever the engine's errors quote.
	Redact []string `json:"redact,omitempty"`
	// Bucket and Prefix select what is mounted.
	Bucket string `json:"bucket"`
	Prefix string `json:"prefix"`
	// Mode is MOUNT or MOUNT_CACHED.
	Mode volume.Mode `json:"mode"`
	// CacheDir is the VFS cache directory (MOUNT_CACHED).
	CacheDir string `json:"cacheDir,omitempty"`
	// CacheMaxSize bounds the VFS cache in bytes (a soft limit: open and
	// not yet uploaded files are never evicted); 0 means unbounded.
	CacheMaxSize int64 `json:"cacheMaxSize,omitempty"`
	// Transfers is the number of parallel uploads (MOUNT_CACHED); 1, the
	// default, uploads files one at a time in the order they were closed.
	Transfers int `json:"transfers,omitempty"`
	// WriteBack is the delay between a file's last close and its upload
	// (MOUNT_CACHED).
	WriteBack time.Duration `json:"writeBack,omitempty"`
	// PrivateDir receives the credential files some backends need (0700
	// directory, 0600 files, removed when the server exits).
	PrivateDir string `json:"privateDir,omitempty"`
	// ControlSocket is the Unix socket on which the server answers status
	// and flush requests.
	ControlSocket string `json:"controlSocket,omitempty"`
	// ReadOnly mounts read-only.
	ReadOnly bool `json:"readOnly,omitempty"`
	// DirCacheTime is how long directory listings are trusted.
	DirCacheTime time.Duration `json:"dirCacheTime"`
	// UID, GID own every file; Umask masks 0777/0666.
	UID   uint32 `json:"uid"`
	GID   uint32 `json:"gid"`
	Umask uint32 `json:"umask"`
	// Exec gives files execute bits where they can be read (the exec
	// mount option, volume.FileMode).
	Exec bool `json:"exec,omitempty"`
	// ReadChunkStreams is the most ranged GETs one sequential MOUNT read
	// runs at once, ReadChunkSize their size (0: readahead's defaults).
	ReadChunkStreams int   `json:"readChunkStreams,omitempty"`
	ReadChunkSize    int64 `json:"readChunkSize,omitempty"`
	// ReadAheadMemory caps the bytes of read-ahead and small-file
	// prefetch the server holds at once (MOUNT): 0 takes readahead's
	// default, negative holds none (every read goes to the store).
	ReadAheadMemory int64 `json:"readAheadMemory,omitempty"`
	// ServerModTime shows each object's last-modified time as its mtime
	// instead of the mtime rclone-style uploaders keep in metadata, which
	// costs one HEAD request per file on its first stat (on S3-compatible
	// stores). MOUNT only: MOUNT_CACHED compares mtimes with its cache.
	ServerModTime bool `json:"serverModTime,omitempty"`
	// LogFormat ("text" or "json") and LogLevel ("debug", "info", ...)
	// are the node plugin's --log-format and --log-level: the server logs
	// as the plugin does ("" takes text and info). LogLevel debug also
	// raises the engine's level.
	LogFormat string `json:"logFormat,omitempty"`
	LogLevel  string `json:"logLevel,omitempty"`
	// PV is the PersistentVolume's name, when known: a log attribute.
	PV string `json:"pv,omitempty"`
}

// Validate checks what Serve relies on.
func (c *Config) Validate() error {
	switch {
	case c.VolumeID == "":
		return fmt.Errorf("mounter config: no volume ID")
	case !filepath.IsAbs(c.MountPoint):
		return fmt.Errorf("mounter config: mount point %q is not absolute", c.MountPoint)
	case c.Bucket == "":
		return fmt.Errorf("mounter config: no bucket")
	case c.Remote["type"] == "":
		return fmt.Errorf("mounter config: no remote type")
	case c.Mode != volume.ModeMount && c.Mode != volume.ModeMountCached:
		return fmt.Errorf("mounter config: mode %q is not served by FUSE", c.Mode)
	case c.Mode == volume.ModeMountCached && !filepath.IsAbs(c.CacheDir):
		return fmt.Errorf("mounter config: MOUNT_CACHED needs an absolute cache directory")
	}
	return nil
}

// section is the rclone remote name for the volume: stable for a volume ID
// and free of secrets (see the package comment on cache directories).
func (c *Config) section() string {
	return "vol" + volume.DirName(c.VolumeID)[:16]
}

// remotePath is the path of the mounted bucket or prefix in the remote.
func (c *Config) remotePath() string {
	p := c.Bucket
	if c.Prefix != "" {
		p += "/" + c.Prefix
	}
	return p
}
