// Package stage attaches a volume to a node's staging path, one Stager per
// mode. The node service picks the Stager by the volume's mode and keeps the
// resulting nodestate record; a Stager only does the mode's own work.
package stage

import (
	"context"
	"time"

	"github.com/bucket-csi/bucket-csi/pkg/nodestate"
	"github.com/bucket-csi/bucket-csi/pkg/store"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// Request is one NodeStage (or inline NodePublish) to carry out.
type Request struct {
	VolumeID    string
	Handle      volume.Handle
	StagingPath string
	Secrets     store.Secrets
	Flags       volume.MountFlags
	// StateDir is the volume's private node-local directory (0700).
	StateDir string
	// PV is the PersistentVolume's name when known (a log attribute).
	PV string
}

// Stager attaches and detaches volumes of one mode.
type Stager interface {
	// Stage makes the volume available at req.StagingPath and fills the
	// mode-specific fields of rec. On error nothing stays mounted.
	Stage(ctx context.Context, req Request, rec *nodestate.Volume) error
	// Unstage detaches a staged volume for good. It returns fault.Pending
	// while work (uploads) must finish first; nothing is lost by retrying.
	Unstage(ctx context.Context, rec *nodestate.Volume) error
	// Release stops serving a volume that is about to be staged again (a
	// dead FUSE server, a moved staging path) without dropping any data:
	// the next Stage picks up where it left off.
	Release(ctx context.Context, rec *nodestate.Volume) error
	// Healthy reports whether a staged volume is still being served.
	Healthy(rec *nodestate.Volume) bool
}

// Settings are node-wide defaults shared by the stagers.
type Settings struct {
	// DirCacheTime is the default directory cache lifetime of mounts.
	DirCacheTime time.Duration
	// ReadChunkStreams and ReadChunkSize tune streaming reads (see
	// mounter.Config).
	ReadChunkStreams int
	ReadChunkSize    int64
	// ObjectMTimes makes MOUNT volumes read each file's mtime from its
	// metadata (see mounter.Config.ServerModTime).
	ObjectMTimes bool
	// LogFormat and LogLevel are the plugin's --log-format and
	// --log-level, handed to the FUSE servers (debug also logs the
	// engine's requests).
	LogFormat, LogLevel string
}

// stopGrace bounds how long an unstage waits for a FUSE server to exit
// after its unmount before terminating it.
const stopGrace = 10 * time.Second

// Checker is a Stager whose live stages can be impaired while their server
// runs (MOUNT_CACHED: uploads that keep failing, a server that does not
// answer). The node service reports what Check finds in
// NodeGetVolumeHealth, after Healthy.
type Checker interface {
	// Check is called only for a stage that Healthy reports as served; it
	// returns nothing for a stage in good health.
	Check(ctx context.Context, rec *nodestate.Volume) []Condition
}

// Condition is one finding of Checker.Check.
type Condition struct {
	// Inaccessible says the volume cannot be used; otherwise it works
	// but is degraded.
	Inaccessible bool
	// Reason is a short CamelCase cause; Message says more, never a
	// secret.
	Reason, Message string
}
