package fuseserver

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	rfs "github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/vfs"
	"golang.org/x/sys/unix"

	"github.com/bucket-csi/bucket-csi/pkg/cachejournal"
)

// Settling a marked node (passthrough_mapped.go) has rclone upload what
// shared mappings may have written into its cache files:
//
//   - rclone's item of the path is opened first (a VFS handle's seek to
//     the end): rclone checks the object then, and drops its cache file
//     if the object changed outside.
//   - The mark that is still the path's cache file is written again by one
//     byte read through rclone and written back, so rclone holds it dirty
//     and uploads it whole, once the cache has room for a whole copy.
//     rclone's cleaner can still replace an open, clean item's file by an
//     empty one (Item.Reset, cache over quota): then the mark is written
//     whole (the object is the same); once dirty, rclone neither resets
//     nor drops the item.
//   - A mark whose file rclone dropped (eviction, reset, the object's
//     change) is written whole, the newest first, if the path holds
//     nothing newer: not dirty, the object the mark last held. Every
//     other mark, and every mark of a path that no longer names a file,
//     is saved beside the path as a new file named
//     <name>.conflict-<UTC time> (conflictName), logged and counted.
//   - A whole copy starts only when the cache's filesystem has room for
//     it. A conflict copy that fails is removed again. A mark is dropped
//     from the settle as soon as it is written or saved, so a retry
//     redoes only what is left.
//   - A settle waits while another node of the path has handles open or
//     marks, and runs with opens, creates, truncates, renames and unlinks
//     held off (fix, taken by polling, never queued ahead of them), so its
//     writes never race an application's. Then the journal's mark is
//     cleared. Renames and unlinks made through the server move or cancel
//     pending settles (passthrough_mapped.go).
//   - One that fails is tried again by poke, after 10 s, 20 s, 40 s, ...
//     at most retryCap apart, while the server runs; the journal keeps
//     the mark meanwhile.

// ptMark is a cache file a read-write passthrough open was given.
type ptMark struct {
	fi os.FileInfo // the cache file, as given to the kernel
	f  *os.File    // a descriptor of its own, kept until settled
	// fingerprint is of the object the cache file last held clean.
	fingerprint string
}

// ptSettle is the settling of one path's marks, from the node's FORGET
// until done. path, tries, at, running and cancelled are guarded by
// passthroughFS.mu; marks belongs to the goroutine settling it (running),
// else to poke, under that mutex.
type ptSettle struct {
	path      string    // where the file is now (renames move it)
	marks     []*ptMark // those not yet written or saved
	tries     int       // failed settles so far
	at        time.Time // not tried again before
	running   bool
	cancelled bool   // the application unlinked or replaced the file
	seen      uint64 // the last path table move applied to path
}

const (
	// pokeInterval is how often the kernel is asked again to drop the
	// entry of a marked node with no handle open (a lookup since the last
	// request may have cached it anew), and failed settles are looked at.
	pokeInterval = 10 * time.Second
	// retryCap bounds the wait between two settles of the same marks.
	retryCap = 5 * time.Minute
)

// retryAfter is the wait after the tries-th failed settle of some marks:
// pokeInterval, doubled after each failure, at most retryCap.
func retryAfter(tries int) time.Duration {
	d := pokeInterval
	for i := 1; i < tries && d < retryCap; i++ {
		d *= 2
	}
	return min(d, retryCap)
}

// startSettle settles s in the background (track).
func (p *passthroughFS) startSettle(s *ptSettle, seen uint64) {
	p.track(s, seen)
	go p.settleTry(s)
}

// track adds s, about to run, to the pending settles, applying the moves
// logged after seen (s's path was read with it), and counts it in
// settling. Not once finish has begun (no FORGET comes then).
func (p *passthroughFS) track(s *ptSettle, seen uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s.seen = seen
	p.catchUp(s)
	p.pending = append(p.pending, s)
	s.running = true
	p.settling.Add(1)
}

// retryDue refreshes the marks of the settles waiting to be tried again
// and starts those that are due.
func (p *passthroughFS) retryDue() {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.pending {
		if s.running {
			continue
		}
		p.refresh(s.path, s.marks)
		if !p.stopping.Load() && !now.Before(s.at) {
			s.running = true
			p.settling.Add(1)
			go p.settleTry(s)
		}
	}
}

// settleTry settles s (ending a settling count) and drops it from the
// pending settles, or leaves it there to be tried again.
func (p *passthroughFS) settleTry(s *ptSettle) {
	defer p.settling.Done()
	ok := p.settle(s, true)
	p.mu.Lock()
	defer p.mu.Unlock()
	s.running = false
	if ok {
		p.pending = slices.DeleteFunc(p.pending, func(o *ptSettle) bool { return o == s })
		return
	}
	s.tries++
	s.at = time.Now().Add(retryAfter(s.tries))
}

// settle writes or saves s's marks (closing each as it is done). With
// final (a FORGET or a retry), it first waits while another node of the
// path has handles or marks, and clears the journal's mark after. Once the
// server stops (finish), nothing waits and the mark stays for the next
// server. False, with the error logged, when marks are left.
func (p *passthroughFS) settle(s *ptSettle, final bool) bool {
	p.lockFix()
	for final && !p.stopping.Load() && p.waits(s) {
		p.fix.Unlock()
		time.Sleep(200 * time.Millisecond)
		p.lockFix()
	}
	defer p.fix.Unlock()
	path, cancelled := p.where(s)
	if cancelled {
		closeMarks(s.marks)
		s.marks = nil
		return true
	}
	if err := p.rewrite(path, s); err != nil {
		p.log.Error("a file a shared mapping may have written is not marked for upload yet: the write journal keeps it marked, and it is tried again while the server runs (else by the next server)", "path", path, "err", err)
		return false
	}
	p.log.Info("a file a shared mapping may have written is settled", "path", path)
	if final && !p.stopping.Load() {
		if err := p.j.Settled(path); err != nil {
			p.log.Warn("the write journal keeps a settled mapping: the next server uploads the file once more", "path", path, "err", err)
		}
	}
	return true
}

// lockFix takes fix for a settle by polling: a writer queued on the lock
// would hold off every new open, create, rename and unlink behind a long
// one under way (a directory rename copies every object).
func (p *passthroughFS) lockFix() {
	for !p.fix.TryLock() {
		time.Sleep(20 * time.Millisecond)
	}
}

// waits reports whether s must wait: not cancelled, and another node of
// its path busy. Call with fix held.
func (p *passthroughFS) waits(s *ptSettle) bool {
	path, cancelled := p.where(s)
	return !cancelled && p.busy(path)
}

// where returns s's path and whether it was cancelled, after the moves
// logged since s last looked (Rename and Unlink apply them too; this does
// not rely on it).
func (p *passthroughFS) where(s *ptSettle) (path string, cancelled bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.catchUp(s)
	return s.path, s.cancelled
}

// busy reports whether a node of path other than a forgotten one has
// handles open or marks, or is being released. Call with fix held (no
// open, create or truncate runs then); a node of path whose mutex is
// taken counts as busy.
func (p *passthroughFS) busy(path string) bool {
	for _, e := range p.nodes.snapshot() {
		if at, ok := p.paths.path(e.id); !ok || at != path {
			continue
		}
		if !e.v.mu.TryLock() {
			return true
		}
		inUse := e.v.pt+e.v.cached > 0 || e.v.mapped != nil
		e.v.mu.Unlock()
		if inUse {
			return true
		}
	}
	return false
}

// rewrite writes or saves s's marks (files of path), dropping each from s
// once done (see the top of this file).
func (p *passthroughFS) rewrite(path string, s *ptSettle) error {
	h, err := p.v.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		if fi, serr := p.v.Stat(path); errors.Is(serr, vfs.ENOENT) || (serr == nil && !fi.Mode().IsRegular()) {
			// Deleted or replaced outside: the path holds something newer.
			return p.keepAll(path, s)
		}
		return err
	}
	// Open rclone's item before anything is compared, and refresh the
	// marks' objects (an upload may have moved them while s waited).
	if _, err := h.Seek(0, io.SeekEnd); err != nil {
		h.Close()
		return err
	}
	p.refresh(path, s.marks)
	now, err := os.Stat(p.cache.DataPath(path))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		h.Close()
		return err
	}
	// The path's own cache file first (it holds every write made through
	// rclone), then the dropped files, the newest first.
	var order []*ptMark
	for i := len(s.marks) - 1; i >= 0; i-- {
		if m := s.marks[i]; now != nil && os.SameFile(m.fi, now) {
			order = append([]*ptMark{m}, order...)
		} else {
			order = append(order, m)
		}
	}
	wrote := false // the path holds a mark's bytes now
	for _, m := range order {
		switch {
		case now != nil && os.SameFile(m.fi, now):
			err = p.touch(path, h, m)
			wrote = true
		case !wrote && p.unchanged(path, m):
			err = p.copyAll(path, h, m)
			wrote = true
		default:
			err = p.keepConflict(path, m)
		}
		if err != nil {
			h.Close()
			return err
		}
		s.drop(m)
	}
	return h.Close()
}

// keepAll saves every mark of s as a conflict copy beside path.
func (p *passthroughFS) keepAll(path string, s *ptSettle) error {
	for _, m := range slices.Clone(s.marks) {
		if err := p.keepConflict(path, m); err != nil {
			return err
		}
		s.drop(m)
	}
	return nil
}

// drop closes m and removes it from s.
func (s *ptSettle) drop(m *ptMark) {
	m.f.Close()
	s.marks = slices.DeleteFunc(s.marks, func(o *ptMark) bool { return o == m })
}

// touch has rclone hold m, path's cache file in rclone's open item behind
// h, dirty: byte 0 read through h and written back. Where the item's file
// changed under it (see the top of this file) m is written whole, or
// saved beside path if the object changed.
func (p *passthroughFS) touch(path string, h vfs.Handle, m *ptMark) error {
	var b [1]byte
	n, err := h.ReadAt(b[:], 0)
	if n == 0 {
		if err == io.EOF {
			return nil // empty: nothing a mapping could write
		}
		return err
	}
	// Room for a whole copy first: the write commits the path to one if
	// rclone reset the file meanwhile. Without room, the write goes ahead
	// while the mark is still the file (it needs no room then, and a file
	// left unsettled could be evicted, leaving only the mark's copy).
	if _, err := p.roomFor(m); err != nil {
		if now, serr := os.Stat(p.cache.DataPath(path)); serr != nil || !os.SameFile(now, m.fi) {
			return err
		}
	}
	if _, err := h.WriteAt(b[:], 0); err != nil {
		return err
	}
	if now, err := os.Stat(p.cache.DataPath(path)); err == nil && os.SameFile(now, m.fi) {
		return nil
	}
	if p.objectIs(path, m.fingerprint) {
		return p.copyAll(path, h, m)
	}
	return p.keepConflict(path, m)
}

// unchanged reports whether path holds nothing newer than m, a file rclone
// dropped: its cache not dirty, its object the one m last held.
func (p *passthroughFS) unchanged(path string, m *ptMark) bool {
	if info, err := p.cache.Info(path); err == nil && info.Dirty {
		return false
	}
	return p.objectIs(path, m.fingerprint)
}

// objectIs reports whether the VFS's object at path has fingerprint fp.
func (p *passthroughFS) objectIs(path, fp string) bool {
	node, err := p.v.Stat(path)
	if err != nil {
		return false
	}
	o, ok := node.DirEntry().(rfs.Object)
	return ok && o != nil && rfs.Fingerprint(context.Background(), o, p.v.Opt.FastFingerprint) == fp
}

// copyAll writes all of m through h, a handle of path, once the cache has
// room for it, and records that the whole file is the application's
// (Repair must not fetch the bucket's bytes over it).
func (p *passthroughFS) copyAll(path string, h vfs.Handle, m *ptMark) error {
	size, err := p.roomFor(m)
	if err != nil {
		return err
	}
	size, err = copyInto(h, m.f, size)
	if err != nil {
		return err
	}
	if err := h.Truncate(size); err != nil {
		return err
	}
	return p.j.Wrote(path, cachejournal.Written{Tail: true})
}

// keepConflict saves m, which cannot go to path, as a new file beside it
// (conflictName), uploaded like any other; a copy that fails is removed.
func (p *passthroughFS) keepConflict(path string, m *ptMark) error {
	size, err := p.roomFor(m)
	if err != nil {
		return err
	}
	at := time.Now()
	for i := 0; ; i++ {
		name := conflictName(path, at, i)
		h, err := p.v.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, vfs.ENOENT) {
			// The directory went too (outside the volume): made again.
			if dir, ok := parentOf(name); ok && p.v.MkdirAll(dir, 0o755) == nil {
				h, err = p.v.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			}
		}
		if errors.Is(err, os.ErrExist) && i < 100 {
			continue
		}
		if err != nil {
			return err
		}
		_, err = copyInto(h, m.f, size)
		if cerr := h.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = p.j.Wrote(name, cachejournal.Written{Tail: true})
		}
		if err != nil {
			if rerr := p.v.Remove(name); rerr != nil {
				p.log.Warn("a conflict copy that failed could not be removed", "kept", name, "err", rerr)
			}
			return err
		}
		p.conflicts.Add(1)
		p.log.Warn("a file a shared mapping wrote and newer content at its path (the object changed or went outside, or a write went through the server after the cache dropped the file): not merged, the mapping's file is kept beside it", "path", path, "kept", name)
		return nil
	}
}

// roomFor returns m's size; it fails with ENOSPC when the cache's
// filesystem lacks room for a copy of m and 16 MiB more (or with the
// error of the stat or statfs).
func (p *passthroughFS) roomFor(m *ptMark) (int64, error) {
	fi, err := m.f.Stat()
	if err != nil {
		return 0, err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(p.cache.Data, &st); err != nil {
		return 0, err
	}
	if free := int64(st.Bavail) * st.Bsize; free < fi.Size()+16<<20 {
		return 0, fmt.Errorf("the cache has %d bytes free for a copy of %d: %w", free, fi.Size(), syscall.ENOSPC)
	}
	return fi.Size(), nil
}

// conflictName is the name of the i-th conflict copy of path saved at at:
// <path>.conflict-<UTC time>, then -1, -2, ... where that exists.
func conflictName(path string, at time.Time, i int) string {
	// A last element that leaves no room for the suffix (255 bytes in
	// all) is cut short and marked with a hash of the whole.
	if base := path[strings.LastIndexByte(path, '/')+1:]; len(base) > 200 {
		cut := 200
		for cut > 0 && !utf8.RuneStart(base[cut]) {
			cut--
		}
		path = path[:len(path)-len(base)] + base[:cut] + fmt.Sprintf("~%08x", crc32.ChecksumIEEE([]byte(base)))
	}
	name := path + ".conflict-" + at.UTC().Format("20060102T150405Z")
	if i > 0 {
		name += "-" + strconv.Itoa(i)
	}
	return name
}

// parentOf is the directory of the VFS path name; false at the root.
func parentOf(name string) (string, bool) {
	i := strings.LastIndexByte(name, '/')
	return name[:max(i, 0)], i > 0
}

// copyInto writes all of f through h from offset 0 and returns its size.
// size is what f held when the caller last looked (a hint: bytes beyond
// it are copied too). The buffer is one byte more than that (so the first
// read also finds the end), up to 1 MiB: most files are small, and
// clearing a 1 MiB buffer for each was a third of the FUSE server's CPU
// while a loop created files of a few bytes (docs/benchmarks.md).
func copyInto(h vfs.Handle, f *os.File, size int64) (int64, error) {
	buf := make([]byte, min(max(size, 0), copyBuffer-1)+1)
	var off int64
	for {
		n, err := f.ReadAt(buf, off)
		if n > 0 {
			if _, werr := h.WriteAt(buf[:n], off); werr != nil {
				return off, werr
			}
			off += int64(n)
		}
		if n == len(buf) && n < copyBuffer {
			buf = make([]byte, copyBuffer) // the file grew since the caller's stat
		}
		if err == io.EOF {
			return off, nil
		} else if err != nil {
			return off, err
		}
	}
}

// copyBuffer is copyInto's largest buffer.
const copyBuffer = 1 << 20

// closeMarks closes the marks' descriptors.
func closeMarks(marks []*ptMark) {
	for _, m := range marks {
		m.f.Close()
	}
}
