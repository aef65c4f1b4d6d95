// Package nodestate keeps the node-local record of every volume this node
// has staged (or published inline), so a restarted node plugin finds its
// live FUSE servers again. Records are JSON files, one directory per volume
// under <root>/volumes/, written atomically with mode 0600 in 0700
// directories. They hold no secrets (only a keyed hash of them, see
// Staged).
package nodestate

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/bucket-csi/bucket-csi/pkg/atomicfile"
	"github.com/bucket-csi/bucket-csi/pkg/mounter"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// Volume is the record of one staged volume.
type Volume struct {
	VolumeID string `json:"volumeID"`
	// PV is the PersistentVolume's name when the volume context gave it
	// (csi.storage.k8s.io/pv/name): the volume's metrics label and the
	// object of its events.
	PV          string      `json:"pv,omitempty"`
	StagingPath string      `json:"stagingPath"`
	Mode        volume.Mode `json:"mode"`
	// StateDir is the volume's private directory (logs, control socket).
	StateDir string `json:"stateDir"`
	// Server is the FUSE server (MOUNT, MOUNT_CACHED); zero for COPY.
	Server mounter.Started `json:"server"`
	// Draining is set while a MOUNT_CACHED volume whose server died is
	// served by a private drain server (see stage.Cached.Unstage).
	Draining bool `json:"draining,omitempty"`
	// Ephemeral marks an inline volume, staged privately by NodePublish.
	Ephemeral bool `json:"ephemeral,omitempty"`
	// Namespace is an inline volume's pod namespace, as kubelet gave it
	// (csi.storage.k8s.io/pod.namespace): the namespace whose cap of
	// inline volumes on this node the volume counts against. Records
	// written before it was kept (an upgrade) count against none until
	// the volume is staged again.
	Namespace string `json:"namespace,omitempty"`
	// Targets are the paths the volume is published (bind-mounted) to.
	Targets []string `json:"targets,omitempty"`
	// SingleWriter is set when published with SINGLE_NODE_SINGLE_WRITER.
	SingleWriter bool      `json:"singleWriter,omitempty"`
	StagedAt     time.Time `json:"stagedAt"`
	// Staged is what the volume was staged with; nil in records written
	// before it was kept (such a stage is not compared).
	Staged *Staged `json:"staged,omitempty"`
}

// Dir is a state directory.
type Dir struct {
	Root string
}

// VolumeDir returns the private directory of volumeID (not created).
func (d Dir) VolumeDir(volumeID string) string {
	return filepath.Join(d.Root, "volumes", volume.DirName(volumeID))
}

// Ensure creates the private directory of volumeID and returns it.
func (d Dir) Ensure(volumeID string) (string, error) {
	dir := d.VolumeDir(volumeID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("state directory: %w", err)
	}
	return dir, nil
}

func (d Dir) recordPath(volumeID string) string {
	return filepath.Join(d.VolumeDir(volumeID), "state.json")
}

// Load returns the record of volumeID, or nil when there is none.
func (d Dir) Load(volumeID string) (*Volume, error) {
	data, err := os.ReadFile(d.recordPath(volumeID))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var v Volume
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("state record of %s is corrupt: %w", volumeID, err)
	}
	return &v, nil
}

// Save writes v atomically.
func (d Dir) Save(v *Volume) error {
	if _, err := d.Ensure(v.VolumeID); err != nil {
		return err
	}
	return atomicfile.WriteJSON(d.recordPath(v.VolumeID), v)
}

// writeTemp writes data to a new 0600 file in dir, synced, and returns its
// path, for the caller to move into place and then remove.
func writeTemp(dir, pattern string, data []byte) (string, error) {
	tmp, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return "", err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return "", err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return "", err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return "", err
	}
	return tmp.Name(), nil
}

// Remove deletes the record and the private directory of volumeID.
func (d Dir) Remove(volumeID string) error {
	return os.RemoveAll(d.VolumeDir(volumeID))
}

// All returns every record on this node.
func (d Dir) All() ([]*Volume, error) {
	matches, err := filepath.Glob(filepath.Join(d.Root, "volumes", "*", "state.json"))
	if err != nil {
		return nil, err
	}
	var out []*Volume
	for _, m := range matches {
		data, err := os.ReadFile(m)
		if err != nil {
			continue
		}
		var v Volume
		if json.Unmarshal(data, &v) == nil {
			out = append(out, &v)
		}
	}
	return out, nil
}
