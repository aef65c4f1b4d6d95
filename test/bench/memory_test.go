package bench

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// pageReportingDelay is the kernel setting, on a VM that hands the pages
// it frees back to its host (virtio-balloon free page reporting, as on
// this machine kind), of how long a page stays free before it is handed
// back: 0 here. A page handed back costs a fault in the host when it is
// used again: filling 1 GiB of such memory took 1.8 s against 60 ms for
// memory freed a moment before (docs/benchmarks.md, "Memory the VM hands
// back"). A FUSE read fills the page cache with new pages every run while
// a raw GET reuses its buffers, so that cost fell on every mount and
// not on the raw GETs, and more the longer the gap before a run.
const pageReportingDelay = "/sys/module/page_reporting/parameters/min_free_ms"

// heldDelay is the delay set while the bench runs, the longest the
// setting takes here (5 minutes): longer than a figure's gaps between
// runs. Memory left free longer is touched again (settleMemory).
const heldDelay = "300000"

// savedDelay keeps the setting's value from before the bench until the
// bench restores it: a bench that was killed leaves it, and the next one
// restores that value rather than the delay it finds held.
const savedDelay = "/run/bucket-csi-bench-min-free-ms"

// holdMemory keeps the memory the bench frees with the VM while it runs,
// as on a machine that hands nothing back. It returns what restores the
// setting (also run on SIGINT and SIGTERM, which then end the process)
// and a line for the output saying what was done ("" on a machine
// without the setting).
func holdMemory() (restore func(), note string, err error) {
	current, err := os.ReadFile(pageReportingDelay)
	if errors.Is(err, os.ErrNotExist) {
		return func() {}, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	old, err := os.ReadFile(savedDelay)
	if errors.Is(err, os.ErrNotExist) {
		old, err = current, os.WriteFile(savedDelay, current, 0o600)
	}
	if err != nil {
		return nil, "", err
	}
	if err := os.WriteFile(pageReportingDelay, []byte(heldDelay), 0o644); err != nil {
		return nil, "", err
	}
	restore = func() {
		if os.WriteFile(pageReportingDelay, old, 0o644) == nil {
			_ = os.Remove(savedDelay)
		}
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-signals
		restore()
		fmt.Fprintf(os.Stderr, "bench: %v: %s restored; the bench's disk and servers may be left\n", s, pageReportingDelay)
		os.Exit(1)
	}()
	note = fmt.Sprintf("# free pages held from the host while the bench ran (%s %s ms, was %s)",
		pageReportingDelay, heldDelay, strings.TrimSpace(string(old)))
	return restore, note, nil
}

// settleBytes is how much free memory settleMemory touches: more than a
// figure's runs fill (a 1 GiB object read through the page cache, its
// copy on the bench's disk).
const settleBytes = 6 << 30

// settleMemory touches settleBytes of free memory (at most half of the
// memory the kernel counts free), so that a figure's runs find memory the
// host backs whatever ran before them: with holdMemory, what they free
// stays so. On a machine that hands nothing back it changes nothing.
func settleMemory() error {
	var info unix.Sysinfo_t
	if err := unix.Sysinfo(&info); err != nil {
		return err
	}
	n := min(settleBytes, int64(info.Freeram)*int64(info.Unit)/2)
	if n < 1<<20 {
		return nil
	}
	m, err := unix.Mmap(-1, 0, int(n), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return err
	}
	_ = unix.Madvise(m, unix.MADV_HUGEPAGE) // fewer faults; a hint only
	for i := 0; i < len(m); i += 4096 {
		m[i] = 1
	}
	return unix.Munmap(m)
}
