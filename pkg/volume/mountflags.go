package volume

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
)

// MountFlags are the options a user may set through StorageClass
// mountOptions or PV spec.mountOptions.
type MountFlags struct {
	ReadOnly     bool
	UID, GID     uint32
	Umask        uint32
	DirCacheTime time.Duration // 0: the driver default
	// Exec makes files show execute bits (see FileMode).
	Exec bool `json:",omitempty"`
}

const acceptedFlags = "ro, exec, uid=<n>, gid=<n>, umask=<octal>, dir-cache-time=<duration>, nosuid, nodev"

// ParseMountFlags parses mount flags. Each flag may hold several
// comma-separated options, as in /etc/fstab. Unknown options are
// fault.Invalid: engine flags, paths and endpoints are never accepted here.
func ParseMountFlags(flags []string) (MountFlags, error) {
	var m MountFlags
	for _, flag := range flags {
		for _, opt := range strings.Split(flag, ",") {
			opt = strings.TrimSpace(opt)
			if opt == "" {
				continue
			}
			key, val, hasVal := strings.Cut(opt, "=")
			bad := func(why string) (MountFlags, error) {
				return MountFlags{}, fmt.Errorf("%w: mount option %q is not valid (%s); accepted: %s", fault.Invalid, opt, why, acceptedFlags)
			}
			switch key {
			case "ro":
				if hasVal {
					return bad("takes no value")
				}
				m.ReadOnly = true
			case "exec":
				if hasVal {
					return bad("takes no value")
				}
				m.Exec = true
			case "rw", "defaults", "nosuid", "nodev":
				// nosuid and nodev are always in effect (every FUSE
				// mount of the driver has them); suid and dev are refused.
			case "uid", "gid":
				n, err := strconv.ParseUint(val, 10, 32)
				if err != nil || !hasVal {
					return bad("expects a number")
				}
				if key == "uid" {
					m.UID = uint32(n)
				} else {
					m.GID = uint32(n)
				}
			case "umask":
				n, err := strconv.ParseUint(val, 8, 32)
				if err != nil || !hasVal || n > 0o777 {
					return bad("expects an octal mask up to 777")
				}
				m.Umask = uint32(n)
			case "dir-cache-time":
				d, err := time.ParseDuration(val)
				if err != nil || !hasVal || d < 0 || d > 24*time.Hour {
					return bad("expects a duration up to 24h")
				}
				m.DirCacheTime = d
			default:
				return bad("unknown option")
			}
		}
	}
	return m, nil
}

// String formats m as the mount options that parse to it, for messages
// (it holds no secret).
func (m MountFlags) String() string {
	ro := "rw"
	if m.ReadOnly {
		ro = "ro"
	}
	s := fmt.Sprintf("%s,uid=%d,gid=%d,umask=%03o,dir-cache-time=%s", ro, m.UID, m.GID, m.Umask, m.DirCacheTime)
	if m.Exec {
		s += ",exec"
	}
	return s
}
