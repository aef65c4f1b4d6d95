package volume

import "os"

// FileMode is the permission bits files of a volume show: 0666 masked by
// the umask mount option (the pod's fsGroup already folded in, see the
// node's mount flags). With the exec mount option files also show execute
// (x) for every class that may read them, as directories do (DirMode), so
// scripts and binaries in a bucket run. The kernel enforces them in every
// mode.
func FileMode(umask uint32, exec bool) os.FileMode {
	if exec {
		return DirMode(umask)
	}
	return os.FileMode(0o666 &^ umask)
}

// DirMode is the permission bits directories of a volume show: 0777 masked
// by the umask, with search (x) kept for every class that may read, so a
// directory a user can list is one the user can enter (umask=011, for
// instance, still gives 0777 directories).
func DirMode(umask uint32) os.FileMode {
	m := 0o777 &^ umask
	return os.FileMode(m | (m&0o444)>>2)
}
