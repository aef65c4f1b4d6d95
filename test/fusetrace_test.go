package test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"golang.org/x/sys/unix"
)

// tracefsRoot is where the kernel's tracing file system is mounted.
const tracefsRoot = "/sys/kernel/tracing"

// fuseTrace counts the requests the kernel sends to one FUSE mount, from
// the fuse:fuse_request_send tracepoint (a recent kernel's: this
// machine's 6.18 has it, older ones may not), in a tracefs
// instance of its own: other tracing on the node is left alone and other
// mounts' requests are filtered out by their connection. Needs root,
// tracefs (mounted at tracefsRoot for the test if it is not, and
// unmounted after) and the tracepoint; a test using it fails where one
// is missing.
type fuseTrace struct {
	inst string // the instance's directory
}

// startFUSETrace starts counting the requests of the FUSE mount at
// mountpoint; the instance is removed when the test ends.
func startFUSETrace(t *testing.T, mountpoint string) *fuseTrace {
	t.Helper()
	if _, err := os.Stat(filepath.Join(tracefsRoot, "instances")); err != nil {
		if err := unix.Mount("nodev", tracefsRoot, "tracefs", 0, ""); err != nil {
			t.Fatalf("tracefs is not mounted at %s and mounting it failed: %v", tracefsRoot, err)
		}
		t.Cleanup(func() { _ = unix.Unmount(tracefsRoot, 0) }) // after the instance's removal
	}
	var st unix.Stat_t
	if err := unix.Stat(mountpoint, &st); err != nil {
		t.Fatal(err)
	}
	// The tracepoint prints the connection as the kernel's dev_t
	// (MKDEV: major << 20 | minor); a FUSE mount's major is 0.
	conn := uint64(unix.Major(st.Dev))<<20 | uint64(unix.Minor(st.Dev))
	inst := filepath.Join(tracefsRoot, "instances", fmt.Sprintf("bucket-csi-test-%d-%d", os.Getpid(), rand.Uint32()))
	if err := os.Mkdir(inst, 0o700); err != nil {
		t.Fatalf("creating a tracefs instance: %v", err)
	}
	f := &fuseTrace{inst: inst}
	t.Cleanup(func() {
		_ = f.enable(false) // removing the instance ends its tracing anyway
		if err := os.Remove(inst); err != nil {
			t.Errorf("removing the tracefs instance %s: %v", inst, err)
		}
	})
	filter := filepath.Join(inst, "events", "fuse", "fuse_request_send", "filter")
	if err := os.WriteFile(filter, fmt.Appendf(nil, "connection == %d", conn), 0o600); err != nil {
		t.Fatalf("filtering the fuse_request_send tracepoint (does the kernel have it?): %v", err)
	}
	if err := f.enable(true); err != nil {
		t.Fatal(err)
	}
	return f
}

// enable turns the tracepoint in f's instance on or off.
func (f *fuseTrace) enable(on bool) error {
	v := "0"
	if on {
		v = "1"
	}
	if err := os.WriteFile(filepath.Join(f.inst, "events", "fuse", "fuse_request_send", "enable"), []byte(v), 0o600); err != nil {
		return fmt.Errorf("setting the fuse_request_send tracepoint to %s: %w", v, err)
	}
	return nil
}

// fuseOpcode finds a request's opcode name in a trace line.
var fuseOpcode = regexp.MustCompile(`\((FUSE_[A-Z_]+)\)`)

// stop ends the trace and returns the requests sent since the start, by
// opcode name (FUSE_OPEN, FUSE_FLUSH, ...).
func (f *fuseTrace) stop(t *testing.T) map[string]int {
	t.Helper()
	if err := f.enable(false); err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(filepath.Join(f.inst, "trace"))
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, m := range fuseOpcode.FindAllSubmatch(out, -1) {
		counts[string(m[1])]++
	}
	return counts
}
