package fuseserver

import (
	"log/slog"
	"maps"
	"path"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/rclone/rclone/vfs"
	"github.com/rclone/rclone/vfs/vfscache/writeback"

	"github.com/bucket-csi/bucket-csi/pkg/cachejournal"
)

// detachFS guards a MOUNT_CACHED file written under a name an earlier
// file lost while rclone still held it: unlinked, or renamed onto, while
// open or queued for upload. rclone's cache item of the earlier file then
// saves its metadata under that name over the metadata of the file there
// now (cachejournal's Detach says how), which would read as uploaded.
//
// Contract: it counts the open handles of every node (an OPEN counts from
// before it is made until its RELEASE, or until it fails; a CREATE from
// before its reply). Before an UNLINK of, or a RENAME onto, a name whose
// node has handles open or which has a journal record (writes not yet
// uploaded: its upload may be queued or under way), it records the
// name's Detach in the journal (an error fails the call with EIO, nothing
// changed). A failed rename's Detach ends at once (Reattach);
// any other ends once the earlier item can save no more and the file there
// now is uploaded: the node that lost the name has no handle open, rclone
// has no upload queued under the name (an item's upload ends with its
// save; a closed file with changes stays queued until uploaded), and no
// node holding the name now has a handle open. Marks are looked at after
// the last RELEASE of a node they wait on and at every tick of the
// journal's sweep (settle); none ends while the queue cannot be read. Until a mark ends, fsync uploads
// the file at that name if the journal has a record of it (durableFS),
// Sweep keeps its record, and Repair after a kill trusts no metadata
// there. Before the call, rclone opens the cache item of every handle of
// the node that can read (openItems). A rename onto a file with writes not
// yet uploaded, of a file with none, uploads the target first
// (uploadFirst). It needs rclone to let a file go at its last close (no
// handle caching: serve.go). Handles the server opens itself (an fsync's
// upload, a passthrough settle's rewrite, an adopt's) are not counted: the
// first two are short, the adopt's runs while the writer's counted handle
// is held. It sits right above journalFS, below every layer that answers
// an open or a release itself.
type detachFS struct {
	fuse.RawFileSystem
	j     *cachejournal.Journal
	paths *pathTable
	v     *vfs.VFS
	log   *slog.Logger

	mu    sync.Mutex                 // also held over reads of the queue (settle)
	open  map[uint64]int             // node -> handles open
	reads map[uint64]map[uint64]bool // node -> its open handles that can read
	marks []*detachMark
}

// detachMark is a Detach not yet ended.
type detachMark struct {
	path string
	node uint64 // the node that lost the name while open, or 0
}

func newDetachFS(inner fuse.RawFileSystem, j *cachejournal.Journal, paths *pathTable, v *vfs.VFS, log *slog.Logger) *detachFS {
	return &detachFS{RawFileSystem: inner, j: j, paths: paths, v: v, log: log, open: map[uint64]int{}, reads: map[uint64]map[uint64]bool{}}
}

func (d *detachFS) Open(c <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	d.count(in.NodeId)
	st := d.RawFileSystem.Open(c, in, out)
	if !st.Ok() {
		d.uncount(in.NodeId)
	} else if in.Flags&syscall.O_ACCMODE != syscall.O_WRONLY {
		d.reader(in.NodeId, out.Fh)
	}
	return st
}

func (d *detachFS) Create(c <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	st := d.RawFileSystem.Create(c, in, name, out)
	if st.Ok() {
		// The node is new: no unlink or rename could name it before the
		// reply.
		d.count(out.NodeId)
		if in.Flags&syscall.O_ACCMODE != syscall.O_WRONLY {
			d.reader(out.NodeId, out.Fh)
		}
	}
	return st
}

func (d *detachFS) Release(c <-chan struct{}, in *fuse.ReleaseIn) {
	d.unread(in.NodeId, in.Fh) // before the inner release frees the number
	d.RawFileSystem.Release(c, in)
	d.uncount(in.NodeId)
}

// Unlink marks the name when its file is open or has a journal record
// (rclone cancels a queued upload of a file it removes, but an upload
// under way still saves at its end). A failed unlink's mark is left to
// settle: rclone drops its item from the cache's table before it deletes
// the object, so the item may be detached all the same.
func (d *detachFS) Unlink(c <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	if _, st := d.detach(h.NodeId, name); !st.Ok() {
		return st
	}
	return d.RawFileSystem.Unlink(c, h, name)
}

// Rename marks the target when its file is open or has writes not yet
// uploaded (a journal record: an upload may be queued), and keeps rclone
// from uploading such a file over the one moved there (uploadFirst).
func (d *detachFS) Rename(c <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	from, ok1 := d.paths.child(in.NodeId, oldName)
	if to, ok2 := d.paths.child(in.Newdir, newName); ok1 && ok2 && to == from {
		return d.RawFileSystem.Rename(c, in, oldName, newName) // one file under two names
	}
	m, st := d.detach(in.Newdir, newName)
	if !st.Ok() {
		return st
	}
	if m != nil {
		if st := d.uploadFirst(c, in, oldName, m.path); !st.Ok() {
			d.undo(m)
			return st
		}
	}
	st = d.RawFileSystem.Rename(c, in, oldName, newName)
	if m != nil && !st.Ok() {
		d.undo(m) // rclone moves the object before it touches the cache
	}
	return st
}

// settle ends the marks that can end; the journal's sweep calls it every
// tick. The queue is read after the handle counts: a release queues its
// upload before it is uncounted, so a count seen at zero has its upload
// in the queue read after it.
func (d *detachFS) settle() {
	d.mu.Lock()
	var queued map[string]bool // read once, when needed
	var done []string
	d.marks = slices.DeleteFunc(d.marks, func(m *detachMark) bool {
		if !d.closedLocked(m) {
			return false
		}
		if queued == nil {
			q, ok := d.queued()
			if !ok {
				return false
			}
			queued = make(map[string]bool, len(q))
			for _, e := range q {
				queued[e.Name] = true
			}
		}
		if queued[m.path] {
			return false
		}
		done = append(done, m.path)
		return true
	})
	d.mu.Unlock()
	for _, p := range done {
		d.reattach(p)
	}
}

// count adds a handle to node id.
func (d *detachFS) count(id uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.open[id]++
}

// reader notes fh, an open handle of node id that can read.
func (d *detachFS) reader(id, fh uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.reads[id] == nil {
		d.reads[id] = map[uint64]bool{}
	}
	d.reads[id][fh] = true
}

// unread forgets fh, a handle of node id about to be released.
func (d *detachFS) unread(id, fh uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if r := d.reads[id]; r != nil {
		if delete(r, fh); len(r) == 0 {
			delete(d.reads, id)
		}
	}
}

// uncount takes a handle of node id back; when that was the node's last
// and a mark waits on the node (it lost the mark's name, or holds it now),
// it ends the marks that can end. Other releases leave them to the tick.
func (d *detachFS) uncount(id uint64) {
	d.mu.Lock()
	if d.open[id]--; d.open[id] > 0 {
		d.mu.Unlock()
		return
	}
	delete(d.open, id)
	waited := false
	if len(d.marks) > 0 { // nearly always none: no path walked then
		p, attached := d.paths.attachedPath(id)
		waited = slices.ContainsFunc(d.marks, func(m *detachMark) bool {
			return m.node == id || attached && m.path == p
		})
	}
	d.mu.Unlock()
	if waited {
		d.settle()
	}
}

// closedLocked reports whether neither the node that lost m's name nor
// any node holding it now has a handle open; d.mu is held.
func (d *detachFS) closedLocked(m *detachMark) bool {
	if m.node != 0 && d.open[m.node] > 0 {
		return false
	}
	for id := range d.open {
		if p, ok := d.paths.attachedPath(id); ok && p == m.path {
			return false
		}
	}
	return true
}

// detach records the Detach of name under parent when the node it leads
// to has handles open or the name has a journal record, and then has
// rclone open the items of the node's handles (openItems); m is nil when
// nothing was recorded.
func (d *detachFS) detach(parent uint64, name string) (*detachMark, fuse.Status) {
	dir, ok := d.paths.path(parent)
	if !ok {
		return nil, fuse.OK // the layers below refuse or skip it
	}
	p := path.Join(dir, name)
	id, _ := d.paths.child(parent, name)
	d.mu.Lock()
	if d.open[id] == 0 {
		id = 0
		if !d.j.Recorded(p) {
			d.mu.Unlock()
			return nil, fuse.OK
		}
	}
	if err := d.j.Detach(p); err != nil {
		d.mu.Unlock()
		d.log.Warn("write journal: a detach not recorded; refused", "path", p, "err", err)
		return nil, fuse.EIO
	}
	m := &detachMark{path: p, node: id}
	d.marks = append(d.marks, m)
	fhs := slices.Collect(maps.Keys(d.reads[id]))
	d.mu.Unlock()
	d.openItems(id, fhs)
	return m, fuse.OK
}

// openItems has rclone open its cache item for each of node id's handles
// fhs (an empty read at 0) before the node loses its name: rclone opens a
// handle's item at its first read or write only, and a handle first used
// after the name went to another file would open the old item under that
// name again, over the new file's data file and metadata. Known limits:
// a write-only handle cannot be opened so without writing, and rclone
// answers an empty read of an empty file without opening its item. The
// read-only handles passthrough writers' joined opens hold (their item is
// the writer's, already open) gain one more open.
func (d *detachFS) openItems(id uint64, fhs []uint64) {
	for _, fh := range fhs {
		_, st := d.RawFileSystem.Read(nil, &fuse.ReadIn{InHeader: fuse.InHeader{NodeId: id}, Fh: fh}, nil)
		if !st.Ok() {
			d.log.Warn("a handle's cache item not opened before its file lost its name", "node", id, "status", st)
		}
	}
}

// uploadFirst has rclone upload target now, and waits for it, before a
// rename onto it from oldName, when target has writes not yet uploaded (a
// journal record), rclone has target's upload queued, and none of the
// moved file waiting (one under way may end before the rename). rclone
// keeps the target's cache item when the moved file is not cached, and
// moves a target's queued upload out of the way only for a moved file with
// one of its own (v1.76.0, File.rename, WriteBack.Rename): either way the
// queued upload would later put the old file's bytes (or the moved file's
// cache file, zeros where it was not fetched) over the object the rename
// put there. Uploaded first, the old item is clean and queued no more:
// rclone drops it as stale at the next open (another object's
// fingerprint), and a failed rename leaves the old file in the bucket. An
// upload that fails, or a wait interrupted, fails the rename (EIO, EINTR):
// nothing changed. A target whose upload is not queued yet (still open, or
// its close's release not yet made) is a known limit.
func (d *detachFS) uploadFirst(c <-chan struct{}, in *fuse.RenameIn, oldName, target string) fuse.Status {
	dir, ok := d.paths.path(in.NodeId)
	if !ok || !d.j.Recorded(target) {
		return fuse.OK
	}
	source := path.Join(dir, oldName)
	q, ok := d.queued()
	if !ok {
		return fuse.EIO
	}
	waits := map[writeback.Handle]writeback.QueueInfo{}
	for _, e := range q {
		if e.Name == source && !e.Uploading {
			return fuse.OK // rclone moves the target's upload out of the way
		}
		if e.Name == target {
			waits[e.ID] = e
		}
	}
	for id := range waits {
		uploadNow(id)
	}
	for len(waits) > 0 {
		select {
		case <-c:
			return fuse.EINTR
		case <-time.After(10 * time.Millisecond):
		}
		if q, ok = d.queued(); !ok {
			return fuse.EIO
		}
		left := map[writeback.Handle]writeback.QueueInfo{}
		for _, e := range q {
			first, waiting := waits[e.ID]
			switch {
			case !waiting:
			case uploadFailed(first, e):
				d.log.Warn("a rename's target waiting for upload could not be uploaded first; refused", "path", target)
				return fuse.EIO
			default:
				left[e.ID] = first
			}
		}
		waits = left
	}
	return fuse.OK
}

// uploadFailed reports whether queue entry now, first seen as first, has
// ended a try without leaving the queue: rclone counts a try when it
// starts it and puts a failed one back, not uploading.
func uploadFailed(first, now writeback.QueueInfo) bool {
	return !now.Uploading && (now.Tries > first.Tries || first.Uploading)
}

// undo ends m, recorded by detach, after the call that was to take the
// name failed.
func (d *detachFS) undo(m *detachMark) {
	d.mu.Lock()
	n := len(d.marks)
	d.marks = slices.DeleteFunc(d.marks, func(o *detachMark) bool { return o == m })
	mine := len(d.marks) < n
	d.mu.Unlock()
	if mine {
		d.reattach(m.path)
	}
}

// reattach ends a Detach of p; on an error the mark stays in the journal
// (the name is treated with suspicion until the server restarts: nothing
// is lost).
func (d *detachFS) reattach(p string) {
	if err := d.j.Reattach(p); err != nil {
		d.log.Warn("write journal: the end of a detach not recorded", "path", p, "err", err)
	}
}

// queued is rclone's upload queue now, and false if it cannot be read.
func (d *detachFS) queued() ([]writeback.QueueInfo, bool) {
	q, err := queue(d.v)
	if err != nil {
		d.log.Warn("rclone's upload queue not read", "err", err)
		return nil, false
	}
	return q, true
}
