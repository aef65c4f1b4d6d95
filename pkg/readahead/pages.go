package readahead

import (
	"golang.org/x/sys/unix"
)

// Block buffers of hugeMin bytes or more live outside the Go heap, in
// anonymous mappings the kernel may back with transparent huge pages
// (MADV_HUGEPAGE, honoured in the "madvise" and "always" THP modes): a
// read-ahead touches hundreds of MiB of fresh memory, and on a VM where a
// page fault is costly, faulting it in 4 KiB pages was most of the FUSE
// server's CPU. Same session, scale 0.25, 3 runs each: a sequential MOUNT
// read 352 → 421 MB/s (median) and 2.3 → 1.6 CPU s/GiB; 16 parallel
// readers 115 → 182 MB/s. (MADV_HUGEPAGE on Go's own heap memory gained
// less: 404 MB/s sequential, parallel readers level.)
//
// Contract: a buffer from mapBuf is given back with unmapBuf exactly once,
// when nothing refers to it any more; memory does that when a buffer's
// last owner lets go of it beyond what it keeps, or drops a kept one.
// Buffers under hugeMin are ordinary Go memory and unmapBuf ignores them.
const hugeMin = 2 << 20

// mapBuf returns c bytes, mapped outside the heap when c >= hugeMin; nil
// if the mapping fails.
func mapBuf(c int64) []byte {
	if c < hugeMin {
		return make([]byte, c)
	}
	b, err := unix.Mmap(-1, 0, int(c), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil
	}
	_ = unix.Madvise(b, unix.MADV_HUGEPAGE) // only a hint: 4 KiB pages without it
	return b
}

// unmapBuf gives back a buffer of mapBuf.
func unmapBuf(b []byte) {
	if cap(b) >= hugeMin {
		_ = unix.Munmap(b[:cap(b)])
	}
}
