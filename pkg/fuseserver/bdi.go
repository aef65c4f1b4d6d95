package fuseserver

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// kernelReadAhead is the page-cache read-ahead the kernel keeps for a
// mount, and so the size of its read requests: a buffered read of up to
// this many bytes reaches the server as one request.
//
// The kernel starts a FUSE mount at VM_READAHEAD_PAGES (128 KiB) and
// FUSE_INIT's max_readahead can only lower it, so go-fuse's MaxReadAhead
// alone leaves every buffered read split into 128 KiB requests: a random
// 1 MiB read became 8 requests, each one more GET of the read-ahead's
// ramp. Only the mount's backing device info (sysfs) raises it.
const kernelReadAhead = 1 << 20

// maxBackground is how many read-ahead (background) requests the kernel
// keeps in flight to the server before it counts the mount as congested
// (at three quarters of it) and cuts its read-ahead short, reading the
// rest page by page. go-fuse's default of 12 is fewer than the read-aheads
// of 16 files read at once, and then 32 KiB requests arrived.
const maxBackground = 64

// setKernelReadAhead sets the read-ahead of the mount at dir to bytes
// through /sys/class/bdi/<major>:<minor>/read_ahead_kb. That needs root
// and a writable /sys/devices/virtual/bdi: a container runtime mounts
// sysfs read-only even for a privileged container, so the chart mounts
// the host's directory into the mounter pod. It returns the value in
// force: on failure, the kernel's own, with the error.
func setKernelReadAhead(dir string, bytes int) (int, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return 0, err
	}
	path := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	if err := os.WriteFile(path, []byte(strconv.Itoa(bytes>>10)), 0); err != nil {
		return readAheadIn(path), err
	}
	return readAheadIn(path), nil
}

// readAheadIn is the read-ahead in bytes a read_ahead_kb file states, 0
// if unreadable.
func readAheadIn(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	kb, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return kb << 10
}
