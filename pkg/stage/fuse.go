package stage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/bucket-csi/bucket-csi/pkg/atomicfile"
	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/fuseproto"
	"github.com/bucket-csi/bucket-csi/pkg/mounter"
	"github.com/bucket-csi/bucket-csi/pkg/mountpoint"
	"github.com/bucket-csi/bucket-csi/pkg/nodestate"
)

// Repairer is a Stager that can restart a dead volume server in place,
// without the stage request (and so without its secrets).
type Repairer interface {
	Repair(ctx context.Context, rec *nodestate.Volume) error
}

// startFUSE saves cfg in the volume's state directory (0600: it holds
// credentials) and starts its server. The saved config lets a dead server
// be restarted by calls that carry no secrets (publish, unstage).
func startFUSE(ctx context.Context, sup *mounter.Supervisor, cfg *fuseproto.Config, stateDir string) (mounter.Started, error) {
	if err := atomicfile.WriteJSON(filepath.Join(stateDir, savedConfig), cfg); err != nil {
		return mounter.Started{}, err
	}
	return sup.Start(ctx, cfg, filepath.Join(stateDir, "mounter.log"))
}

// restartFUSE starts the saved server of rec again, on mountPoint. ok is
// false when there is no saved config (the server never started).
func restartFUSE(ctx context.Context, sup *mounter.Supervisor, rec *nodestate.Volume, mountPoint string) (started mounter.Started, ok bool, err error) {
	data, err := os.ReadFile(filepath.Join(rec.StateDir, savedConfig))
	if errors.Is(err, os.ErrNotExist) {
		return mounter.Started{}, false, nil
	}
	var cfg fuseproto.Config
	if err == nil {
		err = json.Unmarshal(data, &cfg)
	}
	if err != nil {
		return mounter.Started{}, false, fmt.Errorf("%w: reading the saved FUSE server config: %v", fault.Unavailable, err)
	}
	cfg.MountPoint = mountPoint
	if err := mountpoint.Unmount(mountPoint); err != nil {
		return mounter.Started{}, false, err
	}
	if err := os.MkdirAll(mountPoint, 0o750); err != nil {
		return mounter.Started{}, false, err
	}
	started, err = sup.Start(ctx, &cfg, filepath.Join(rec.StateDir, "mounter.log"))
	return started, err == nil, err
}

// repairFUSE restarts a dead server of rec at its staging path.
func repairFUSE(ctx context.Context, sup *mounter.Supervisor, rec *nodestate.Volume) error {
	started, ok, err := restartFUSE(ctx, sup, rec, rec.StagingPath)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: the volume's FUSE server is gone and cannot be restarted without staging again", fault.Precondition)
	}
	rec.Server = started
	return nil
}

// ControlSocket is the control socket of rec's FUSE server (see
// mounter.Query and mounter.QueryStats). Servers of MOUNT volumes staged
// before it existed have none.
func ControlSocket(rec *nodestate.Volume) string {
	return filepath.Join(rec.StateDir, controlSocket)
}

// fuseStatsWait bounds how long fuseFigures waits for a server's answer.
const fuseStatsWait = 3 * time.Second

// fuseFigures asks rec's FUSE server for its statistics, within 3 s: a
// dead server or one that does not answer has none; a live one without a
// control socket is NoStats.
func fuseFigures(ctx context.Context, rec *nodestate.Volume) Figures {
	if !rec.Server.Alive() {
		return Figures{}
	}
	if _, err := os.Stat(ControlSocket(rec)); errors.Is(err, os.ErrNotExist) {
		return Figures{NoStats: true}
	}
	ctx, cancel := context.WithTimeout(ctx, fuseStatsWait)
	defer cancel()
	st, err := mounter.QueryStats(ctx, ControlSocket(rec))
	if err != nil {
		return Figures{}
	}
	return Figures{FUSE: &st}
}
