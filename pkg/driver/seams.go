package driver

import (
	"golang.org/x/sys/unix"

	"github.com/bucket-csi/bucket-csi/pkg/mountpoint"
	"github.com/bucket-csi/bucket-csi/pkg/nodestate"
)

// The node service reaches the machine only through the seams below and
// the stagers (Config.Stagers, which start and stop FUSE servers and
// copies): each is a field of Config with the real one as default, so the
// handlers run in unit tests with a mount table in memory and fake
// stagers, without root, FUSE or a server.

// Mounts is the node's mount table as the node service uses it: read from
// mountinfo (never by stat, which hangs on a stuck FUSE server), and the
// bind mounts that publish a staged volume. mountpoint.System is the real
// one (the default).
type Mounts interface {
	// Get returns the topmost mount at path, or nil when path is not a
	// mount point.
	Get(path string) (*mountpoint.Info, error)
	// Below returns the mount points strictly below dir.
	Below(dir string) ([]string, error)
	// Bind bind-mounts src on dst, nosuid and nodev, read-only when ro or
	// when src is a read-only mount point; errors are fault.Unavailable
	// and leave nothing mounted at dst.
	Bind(src, dst string, ro bool) error
	// Unmount unmounts everything stacked on path; a path that is not
	// mounted is not an error, a busy one is fault.Pending.
	Unmount(path string) error
	// Detach is Unmount, but detaches a busy mount lazily instead of
	// answering fault.Pending.
	Detach(path string) error
}

// NodeState keeps the node-local record of each staged volume and its
// private directory. nodestate.Dir is the real one (the default: a Dir
// with an empty root, which only a controller-only driver uses).
type NodeState interface {
	// VolumeDir is the private directory of volumeID (not created).
	VolumeDir(volumeID string) string
	// Ensure creates the private directory of volumeID and returns it.
	Ensure(volumeID string) (string, error)
	// Load returns the record of volumeID, or nil when there is none.
	Load(volumeID string) (*nodestate.Volume, error)
	// Save writes a record atomically (creating its directory).
	Save(v *nodestate.Volume) error
	// Remove deletes the record and the private directory of volumeID.
	Remove(volumeID string) error
	// All returns every record on this node.
	All() ([]*nodestate.Volume, error)
	// SecretsMAC is a keyed hash of secrets: equal secrets give equal
	// values on one node; it never reveals them.
	SecretsMAC(secrets map[string]string) (string, error)
}

// Statfs is statfs(2) on a mounted volume: NodeGetVolumeStats calls it in
// a goroutine and gives up after a deadline, so it may hang (a stuck FUSE
// server). unix.Statfs is the default.
type Statfs func(path string, st *unix.Statfs_t) error

// Compile-time checks that the defaults fit their seams.
var (
	_ Mounts    = mountpoint.System{}
	_ NodeState = nodestate.Dir{}
	_ Statfs    = unix.Statfs
)
