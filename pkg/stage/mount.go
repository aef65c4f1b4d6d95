package stage

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/bucket-csi/bucket-csi/pkg/budget"
	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/fuseproto"
	"github.com/bucket-csi/bucket-csi/pkg/mounter"
	"github.com/bucket-csi/bucket-csi/pkg/nodestate"
	"github.com/bucket-csi/bucket-csi/pkg/redact"
	"github.com/bucket-csi/bucket-csi/pkg/store"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// Mount stages MOUNT volumes: a streaming FUSE mount with no disk cache,
// served by its own process.
type Mount struct {
	Supervisor *mounter.Supervisor
	Stores     store.Registry
	Settings   Settings
	// Memory is the node's read-ahead memory budget; each server gets a
	// share of it while staged (see Stage).
	Memory *budget.Ledger
	// ServerMemory is the read-ahead memory one server asks for.
	ServerMemory int64
	// Servers caps the node's FUSE servers: each staged volume holds one
	// of its units (nil: no cap).
	Servers *budget.Ledger
}

// MinServerMemory is the smallest read-ahead share a server gets: below
// it (the node's read-ahead memory is all granted) a server reads without
// read-ahead buffers.
const MinServerMemory = 16 << 20

// Stage checks that the volume's credentials can list the bucket
// (checkAccess), takes one of the node's FUSE server places (Servers:
// fault.Exhausted when all are taken), then starts the FUSE server on
// req.StagingPath with its share of the node's read-ahead memory:
// ServerMemory while the node has it, else what is left down to
// MinServerMemory, else none (each read then goes straight to the store:
// slower, but nothing is refused for memory).
func (m *Mount) Stage(ctx context.Context, req Request, rec *nodestate.Volume) error {
	if err := checkAccess(ctx, m.Stores, req); err != nil {
		return err
	}
	cfg, err := fuseConfig(req, m.Stores, m.Settings)
	if err != nil {
		return err
	}
	if err := m.Servers.Reserve(req.VolumeID, 1, ""); err != nil {
		return err
	}
	share, err := m.Memory.ReserveUpTo(req.VolumeID, m.ServerMemory, MinServerMemory)
	if err != nil {
		_ = m.Servers.Release(req.VolumeID)
		return err
	}
	cfg.ReadAhead, cfg.ServerModTime = true, !m.Settings.ObjectMTimes
	cfg.ReadAheadMemory = share
	if share == 0 && m.Memory != nil {
		cfg.ReadAheadMemory = -1
	}
	started, err := startFUSE(ctx, m.Supervisor, cfg, req.StateDir)
	if err != nil {
		_ = m.Memory.Release(req.VolumeID)
		_ = m.Servers.Release(req.VolumeID)
		return err
	}
	rec.Server = started
	return nil
}

// Repair restarts a dead FUSE server in place.
func (m *Mount) Repair(ctx context.Context, rec *nodestate.Volume) error {
	return repairFUSE(ctx, m.Supervisor, rec)
}

// Unstage unmounts and stops the FUSE server.
func (m *Mount) Unstage(ctx context.Context, rec *nodestate.Volume) (Unstaged, error) {
	return Unstaged{}, m.Release(ctx, rec)
}

// Release is Unstage: a streaming mount holds no data of its own, so a
// forced kill loses nothing.
func (m *Mount) Release(ctx context.Context, rec *nodestate.Volume) error {
	if _, err := mounter.Stop(ctx, rec.Server, rec.StagingPath, stopGrace); err != nil {
		return err
	}
	if err := m.Servers.Release(rec.VolumeID); err != nil {
		return err
	}
	return m.Memory.Release(rec.VolumeID)
}

// DiscardFailed is true: a failed stage of a streaming mount leaves
// nothing of value in its state directory.
func (m *Mount) DiscardFailed() bool { return true }

// Figures asks the FUSE server for its statistics.
func (m *Mount) Figures(ctx context.Context, rec *nodestate.Volume) Figures {
	return fuseFigures(ctx, rec)
}

// Healthy reports whether the FUSE server still runs.
func (m *Mount) Healthy(rec *nodestate.Volume) bool { return rec.Server.Alive() }

// fuseConfig builds the mounter config shared by MOUNT and MOUNT_CACHED;
// each stager adds its own settings (Mount: read-ahead; Cached: the
// cache).
//
// Secrets larger than fuseproto.MaxSecretBytes are refused (fault.Invalid)
// here, before a stager reserves anything: a config the server cannot
// read whole would fail every start, the unstage's drain server too.
func fuseConfig(req Request, stores store.Registry, set Settings) (*fuseproto.Config, error) {
	n := 0
	for k, v := range req.Secrets {
		n += len(k) + len(v)
	}
	if n > fuseproto.MaxSecretBytes {
		return nil, fmt.Errorf("%w: the volume's secret holds %d bytes, more than the %d a FUSE server takes; give the volume a secret with the store's keys only", fault.Invalid, n, fuseproto.MaxSecretBytes)
	}
	b, err := stores.Get(req.Handle.Store)
	if err != nil {
		return nil, err
	}
	remote, err := b.Rclone(req.Secrets, req.Handle.Location)
	if err != nil {
		return nil, err
	}
	// An explicit mount option wins over the profile, the profile over
	// the node's flags.
	tune := req.Handle.Profile.Tuning()
	dct := volume.Or(req.Flags.DirCacheTime, volume.Or(tune.DirCacheTime, set.DirCacheTime))
	return &fuseproto.Config{
		VolumeID:         req.VolumeID,
		MountPoint:       req.StagingPath,
		Remote:           remote,
		Redact:           redact.Values(req.Secrets),
		Bucket:           req.Handle.Bucket,
		Prefix:           req.Handle.Prefix,
		Format:           fuseproto.ConfigFormat,
		Mode:             req.Handle.Mode,
		ReadOnly:         req.Flags.ReadOnly,
		DirCacheTime:     dct,
		UID:              req.Flags.UID,
		GID:              req.Flags.GID,
		Umask:            req.Flags.Umask,
		Exec:             req.Flags.Exec,
		PrivateDir:       filepath.Join(req.StateDir, "private"),
		ControlSocket:    filepath.Join(req.StateDir, controlSocket),
		LogFormat:        set.LogFormat,
		LogLevel:         set.LogLevel,
		PV:               req.PV,
		ReadChunkStreams: set.ReadChunkStreams,
		ReadChunkSize:    set.ReadChunkSize,
	}, nil
}

var (
	_ Stager   = (*Mount)(nil)
	_ Repairer = (*Mount)(nil)
	_ Disposer = (*Mount)(nil)
	_ Reporter = (*Mount)(nil)
)
