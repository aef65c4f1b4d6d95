// Package fuseproto is the protocol between the node plugin (pkg/mounter,
// which starts and supervises FUSE servers) and a FUSE server process
// (pkg/fuseserver, the bucket-csi-mounter binary), in one place:
//
//   - the server reads its Config as JSON on stdin (credentials included:
//     they never appear on a command line or in an environment);
//   - it reports readiness with one status line on fd 3 (StatusFD): "ok",
//     or an error carrying its pkg/fault kind (see ErrorLine and
//     ParseStatusLine), so a config the server refuses stays final and an
//     unreachable store stays retryable across the process boundary;
//   - it answers GET /status, GET /stats and POST /flush on its control
//     socket with Status and Stats: counts only, never engine text.
//
// It holds types and encodings only; it imports neither side.
package fuseproto

import (
	"encoding/json"
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
	// Format is ConfigFormat in every config written since the settings
	// below replaced the mode; 0 marks one saved by an older driver, read
	// by its Mode (see UnmarshalJSON).
	Format int `json:"format,omitempty"`
	// Mode is the volume's mode: a label for the server's log only (the
	// server does what the settings below say).
	Mode volume.Mode `json:"mode"`
	// Cache serves through an on-disk VFS cache in CacheDir: reads fill
	// it, writes are uploaded from it after close (MOUNT_CACHED). Without
	// it nothing is cached on disk.
	Cache bool `json:"cache,omitempty"`
	// Durable makes fsync (and close after a write) wait until the file
	// is in the bucket (see durableFS). Only with Cache.
	Durable bool `json:"durable,omitempty"`
	// ReadAhead streams reads through pkg/readahead (parallel ranged GETs
	// once a read is sequential, small files fetched ahead in listing
	// order; see ReadChunkStreams, ReadChunkSize, ReadAheadMemory) instead
	// of rclone's own buffer (MOUNT). Not with Cache.
	ReadAhead bool `json:"readAhead,omitempty"`
	// Prefetch fetches small files ahead in listing order through
	// pkg/readahead, every other read left to the cache (MOUNT_CACHED;
	// see ReadAheadMemory). Only with Cache: ReadAhead includes it.
	Prefetch bool `json:"prefetch,omitempty"`
	// Passthrough hands the kernel the cache file of a wholly cached,
	// clean file on open (FUSE passthrough, Linux 6.9+, where the kernel
	// offers it), so reads skip the server. With Cache and Durable. See
	// fuseserver/passthrough.go.
	Passthrough bool `json:"passthrough,omitempty"`
	// ServerWrites: no new file becomes a passthrough writer
	// (fuseserver/passthrough_writer.go), whose cost per file a small
	// file does not earn back (the small-files profile); new files are
	// written through the server. Reads, and shared mappings beside
	// passthrough readers, still use the cache file.
	ServerWrites bool `json:"serverWrites,omitempty"`
	// CacheDir is the VFS cache directory (with Cache).
	CacheDir string `json:"cacheDir,omitempty"`
	// CacheMaxSize bounds the VFS cache in bytes (a soft limit: open and
	// not yet uploaded files are never evicted); 0 means unbounded.
	CacheMaxSize int64 `json:"cacheMaxSize,omitempty"`
	// Transfers is the number of parallel uploads (with Cache); 1, the
	// default, uploads files one at a time in the order they were closed.
	Transfers int `json:"transfers,omitempty"`
	// WriteBack is the delay between a file's last close and its upload
	// (with Cache).
	WriteBack time.Duration `json:"writeBack,omitempty"`
	// PrivateDir receives the credential files some backends need (0700
	// directory, 0600 files, removed when the server exits).
	PrivateDir string `json:"privateDir,omitempty"`
	// ControlSocket is the Unix socket on which the server answers status
	// and flush requests (see the package comment).
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
	// ReadChunkStreams is the most ranged GETs one sequential read runs
	// at once (twice that from a far store: readahead.Options.Window),
	// ReadChunkSize their size (with ReadAhead; 0: readahead's defaults).
	ReadChunkStreams int   `json:"readChunkStreams,omitempty"`
	ReadChunkSize    int64 `json:"readChunkSize,omitempty"`
	// ReadAheadMemory caps the bytes of read-ahead and small-file
	// prefetch the server holds at once (with ReadAhead or Prefetch): 0 takes
	// readahead's default, negative holds none (every read goes to the
	// store).
	ReadAheadMemory int64 `json:"readAheadMemory,omitempty"`
	// ServerModTime shows each object's last-modified time as its mtime
	// instead of the mtime rclone-style uploaders keep in metadata, which
	// costs one HEAD request per file on its first stat (on S3-compatible
	// stores). Not with Cache, which compares mtimes with its cache.
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
	case c.Cache && !filepath.IsAbs(c.CacheDir):
		return fmt.Errorf("mounter config: a cache needs an absolute cache directory")
	case c.Cache && (c.ReadAhead || c.ServerModTime):
		return fmt.Errorf("mounter config: a cache serves without read-ahead and server mtimes")
	case c.Prefetch && !c.Cache:
		return fmt.Errorf("mounter config: prefetch is a cache's (read-ahead includes it)")
	case c.Durable && !c.Cache:
		return fmt.Errorf("mounter config: durable fsync needs a cache")
	case c.Passthrough && !c.Durable:
		return fmt.Errorf("mounter config: passthrough needs a cache with durable fsync")
	}
	return nil
}

// MaxConfigBytes is the most a FUSE server reads of its config.
const MaxConfigBytes = 1 << 20

// MaxSecretBytes bounds a volume's secrets (names and values) for a FUSE
// server: a config holds them at most twice (the store's settings, the
// values to mask), and JSON writes a byte as at most 6, so 2 × 6 ×
// MaxSecretBytes leaves room under MaxConfigBytes. Real credentials (a
// service account key, a private key) take a few KiB.
const MaxSecretBytes = 64 << 10

// ConfigFormat is the Format of a Config with explicit settings.
const ConfigFormat = 2

// UnmarshalJSON reads a Config. One saved by a driver before ConfigFormat
// (Format 0, the settings implied by its mode: saved in a volume's state
// directory and read back to restart its dead server after an upgrade)
// gets the settings its mode had: MOUNT streams through read-ahead, with
// server mtimes if it asked for them; MOUNT_CACHED caches with durable
// fsync, and any server mtimes it asked for are ignored, as they were.
func (c *Config) UnmarshalJSON(data []byte) error {
	type plain Config // without this method
	if err := json.Unmarshal(data, (*plain)(c)); err != nil {
		return err
	}
	if c.Format != 0 {
		return nil
	}
	switch c.Mode {
	case volume.ModeMount:
		c.ReadAhead = true
	case volume.ModeMountCached:
		c.Cache, c.Durable, c.ServerModTime = true, true, false
	}
	c.Format = ConfigFormat
	return nil
}
