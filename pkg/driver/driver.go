// Package driver is the gRPC edge of bucket-csi: the CSI Identity,
// Controller and Node services. Handlers validate requests, take per-volume
// locks and call down into volume, bucket, store and stage; every error
// leaves through toStatus, which maps error kinds to CSI codes in one place.
//
// Idempotency contract: every call may be repeated with the same arguments
// and answers as the first successful call did (OK for a volume that is
// already created, staged, published, unpublished, unstaged or deleted). A
// call that overlaps another on the same volume answers Aborted.
package driver

import (
	"log/slog"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"

	"github.com/bucket-csi/bucket-csi/pkg/bucket"
	"github.com/bucket-csi/bucket-csi/pkg/events"
	"github.com/bucket-csi/bucket-csi/pkg/kube"
	"github.com/bucket-csi/bucket-csi/pkg/metrics"
	"github.com/bucket-csi/bucket-csi/pkg/mountpoint"
	"github.com/bucket-csi/bucket-csi/pkg/nodestate"
	"github.com/bucket-csi/bucket-csi/pkg/stage"
	"github.com/bucket-csi/bucket-csi/pkg/store"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// Name is the CSI driver name: the CSIDriver object, StorageClass
// provisioner and kubelet plugin directory all use it.
const Name = volume.DriverName

// Config is what a Driver is built from.
type Config struct {
	Version string
	NodeID  string
	// Controller and Node select the services this instance serves.
	Controller, Node bool
	// Defaults are the driver-wide attribute defaults (default store).
	Defaults volume.Defaults
	// BucketPrefix starts every bucket name the driver derives from a PV name.
	BucketPrefix string
	// Stores are the configured object stores.
	Stores store.Registry
	// Ownership marks, recognizes and purges the buckets the controller
	// manages (signing key and creation journal); nil when no ownership
	// key is configured: creating and deleting managed buckets then
	// answers FailedPrecondition.
	Ownership *bucket.Keeper
	// PVs, if set, lists the cluster's PersistentVolumes: a bucket is never
	// purged while a PersistentVolume other than the deleted volume's own
	// (a static PV that copied its handle, for one) still names it. Nil
	// (no cluster configured) relies on the volume records alone.
	PVs kube.PVLister
	// State keeps the node-local record of each staged volume; nil is a
	// nodestate.Dir with an empty root (a controller-only driver).
	State NodeState
	// Mounts is the node's mount table; nil is the real one
	// (mountpoint.System).
	Mounts Mounts
	// Statfs reads a mounted volume's usage; nil is unix.Statfs.
	Statfs Statfs
	// Inline is the policy for inline ephemeral volumes.
	Inline InlinePolicy
	// Stagers attach volumes on the node, by mode.
	Stagers map[volume.Mode]stage.Stager
	// Ops, if set, counts every CSI call by method and code.
	Ops *metrics.Ops
	// Volumes, if set, records per-volume figures for the node's metrics
	// (see VolumeFigures).
	Volumes *metrics.Node
	// Events, if set, receives the events about pods and
	// PersistentVolumes (see events.go); nil records none.
	Events events.Recorder
	Log    *slog.Logger
}

// InlinePolicy limits inline ephemeral volumes, which anyone who can
// create a pod can write. Endpoints, engine flags and paths can never be set
// in volume attributes or mount flags (volume.Parse, volume.ParseMountFlags
// refuse them); this policy adds which stores may be used and whether the
// driver's own identity may be.
type InlinePolicy struct {
	// Stores lists the stores inline volumes may use; empty means none.
	Stores []string
	// Modes lists the modes inline volumes may use; empty means MOUNT
	// only. COPY and MOUNT_CACHED keep data on the node's disk on behalf
	// of a pod that may vanish, so an admin allows them on purpose.
	Modes []volume.Mode
	// AmbientCredentials lets an inline volume without a secret use the
	// driver's own identity. Off by default: a pod must bring credentials
	// from a Secret in its own namespace.
	AmbientCredentials bool
	// PerNamespace caps the inline volumes of one namespace staged on
	// this node at once (0: no cap), so that no namespace's pods take
	// every FUSE server place of a node: inline volumes have no
	// ResourceQuota, unlike PersistentVolumeClaims. The namespace is
	// kubelet's pod.namespace key, which overrides the pod author's
	// attributes when the CSIDriver sets podInfoOnMount (the chart does);
	// with the cap on, a request without it is refused.
	PerNamespace int
}

// modes returns the modes inline volumes may use.
func (p InlinePolicy) modes() []volume.Mode {
	if len(p.Modes) == 0 {
		return []volume.Mode{volume.ModeMount}
	}
	return p.Modes
}

// Driver implements the CSI services.
type Driver struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedControllerServer
	csi.UnimplementedNodeServer

	cfg   Config
	log   *slog.Logger
	locks *keyLocks
	// limit spaces out recurring events (COPY progress, uploads pending).
	limit *events.Limiter
	// flushWaits holds, by volume ID, when a MOUNT_CACHED unstage first
	// answered that uploads were pending.
	flushWaits sync.Map
	// statfs holds the paths with a statfs in flight.
	statfs sync.Map
	// pvRefs holds the bound PVs found by their handles (stagedPV).
	pvRefs sync.Map
	// inline counts inline volumes against InlinePolicy.PerNamespace.
	inline inlineCap
}

// New returns a Driver for cfg.
func New(cfg Config) *Driver {
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	if cfg.Events == nil {
		cfg.Events = events.Nop{}
	}
	if cfg.State == nil {
		cfg.State = nodestate.Dir{}
	}
	if cfg.Mounts == nil {
		cfg.Mounts = mountpoint.System{}
	}
	if cfg.Statfs == nil {
		cfg.Statfs = unix.Statfs
	}
	return &Driver{cfg: cfg, log: log, locks: newKeyLocks(), limit: &events.Limiter{Every: time.Minute}}
}
