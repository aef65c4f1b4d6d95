// Package stage attaches a volume to a node's staging path, one Stager per
// mode. The node service picks the Stager by the volume's mode and keeps the
// resulting nodestate record; a Stager only does the mode's own work.
package stage

import (
	"context"
	"time"

	"github.com/bucket-csi/bucket-csi/pkg/fuseproto"
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
	// Tenant is the namespace the volume serves (its claim's, or an inline
	// volume's pod's), "" when not known: node places are shared by it. A
	// copy counts against the tenant of the Stage that started it, also
	// when a retry knows the namespace better.
	Tenant string
}

// Stager attaches and detaches volumes of one mode.
type Stager interface {
	// Stage makes the volume available at req.StagingPath and fills the
	// mode-specific fields of rec. On error nothing stays mounted.
	Stage(ctx context.Context, req Request, rec *nodestate.Volume) error
	// Unstage detaches a staged volume for good. It returns fault.Pending
	// while work (uploads) must finish first; nothing is lost by retrying.
	// Whatever the outcome, it reports what kind of unstage it was (see
	// Unstaged) so the node service can tell its users and record it.
	Unstage(ctx context.Context, rec *nodestate.Volume) (Unstaged, error)
	// Release stops serving a volume that is about to be staged again (a
	// dead FUSE server, a moved staging path) without dropping any data:
	// the next Stage picks up where it left off.
	Release(ctx context.Context, rec *nodestate.Volume) error
	// Healthy reports whether a staged volume is still being served.
	Healthy(rec *nodestate.Volume) bool
}

// Unstaged is what an Unstage did, for the node service's events and
// metrics.
type Unstaged struct {
	// Flush says the unstage uploads what the stage wrote before it
	// detaches (MOUNT_CACHED): with fault.Pending, uploads are still
	// pending; with success, every file is in the bucket (a flush whose
	// duration the node records).
	Flush bool
}

// Disposer is a Stager whose failed Stage leaves nothing worth keeping in
// the volume's state directory (MOUNT: a streaming mount holds no data of
// its own). When DiscardFailed is true, the node service removes the
// volume's record and state directory after a failed Stage, unless a mount
// is still below the directory. Stagers that are not Disposers keep them
// for the next Stage (a copy resumes, a cache drains).
type Disposer interface {
	DiscardFailed() bool
}

// Reporter is a Stager whose staged volumes have figures for the node's
// per-volume metrics.
type Reporter interface {
	// Figures returns what rec's stage reports now. It may ask the
	// volume's server, and gives up when ctx ends (the figures are then
	// left out, never an error).
	Figures(ctx context.Context, rec *nodestate.Volume) Figures
}

// Figures are a staged volume's figures; a field is nil (or false) when
// the mode has none or they are not known.
type Figures struct {
	// Copy are a COPY volume's copy figures.
	Copy *CopyFigures
	// FUSE is what the volume's FUSE server answered.
	FUSE *fuseproto.Stats
	// NoStats marks a live FUSE server that has no control socket to ask
	// (started by a driver version without one): its figures are
	// unknown, not down.
	NoStats bool
}

// Abandoner is a Stager whose failed Stage may hold what no unstage would
// release: kubelet takes some answers as final (all codes but
// Unavailable, ResourceExhausted, Aborted, DeadlineExceeded and Canceled)
// and then never unstages the volume, not even once the pod is gone.
// After such an answer the node service calls Abandon, and forgets the
// volume when it lets go (true). Abandon keeps what a later stage of the
// volume can use (a COPY's files, as a kept copy the disk budget may
// evict); false keeps the whole failed stage for the next one (a
// MOUNT_CACHED cache holding files: its uploads may be pending), as
// stagers that are not Abandoners do.
type Abandoner interface {
	Abandon(ctx context.Context, rec *nodestate.Volume) (bool, error)
}

// Tracker is a Stager whose Stage works on in the background between
// calls (COPY: Stage answers fault.Pending while its download runs). The
// node service tells the volume's users how it goes (events).
type Tracker interface {
	// Progress returns the figures of volumeID's running work, or of its
	// last finished one while the volume stays staged; ok is false when
	// neither is known. It never blocks on the work.
	Progress(volumeID string) (f CopyFigures, ok bool)
}

// Settings are node-wide defaults shared by the stagers.
type Settings struct {
	// DirCacheTime is the default directory cache lifetime of mounts.
	DirCacheTime time.Duration
	// ReadChunkStreams and ReadChunkSize tune streaming reads (see
	// fuseproto.Config).
	ReadChunkStreams int
	ReadChunkSize    int64
	// ObjectMTimes makes MOUNT volumes read each file's mtime from its
	// metadata (see fuseproto.Config.ServerModTime).
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
