package fuseserver

import (
	"context"
	"fmt"
	"log/slog"
	"path"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/rc"
	"github.com/rclone/rclone/lib/ranges"
	"github.com/rclone/rclone/vfs"

	"github.com/bucket-csi/bucket-csi/pkg/cachejournal"
	"github.com/bucket-csi/bucket-csi/pkg/fault"
)

// openJournal opens the write journal of a MOUNT_CACHED volume's cache and
// repairs what a killed server left, before the VFS opens the cache
// (cachejournal explains why rclone alone would lose those files).
func openJournal(cacheDir string, f fs.Fs, log *slog.Logger) (*cachejournal.Journal, error) {
	j, err := cachejournal.Open(cacheDir, f)
	if err != nil {
		return nil, err
	}
	for _, r := range j.Repair() {
		if r.Failed {
			log.Error("cache not repaired after a server was killed: rclone decides what becomes of the file", "path", r.Name, "action", r.Action)
			continue
		}
		log.Warn("cache repaired after a server was killed", "path", r.Name, "action", r.Action)
	}
	return j, nil
}

// completeCache fetches the bytes files waiting for upload lack
// (cachejournal's Complete says why) before the VFS opens the cache. A
// store that does not answer for such a file stops the server with
// fault.Unavailable: the stage, repair or drain that started it is retried.
func completeCache(ctx context.Context, j *cachejournal.Journal, f fs.Fs, log *slog.Logger) error {
	done, err := j.Complete(ctx, f)
	for _, r := range done {
		if r.Failed {
			log.Error("a file waiting for upload lacks bytes the cache could not fetch: rclone decides what becomes of the file", "path", r.Name, "action", r.Action)
			continue
		}
		log.Warn("a file waiting for upload completed from the bucket", "path", r.Name, "action", r.Action)
	}
	if err != nil {
		return fmt.Errorf("%w: not serving the cache yet: %v (serving now could upload zeros over the bucket's bytes)", fault.Unavailable, err)
	}
	return nil
}

// checkJournalRoots fails when the journal would look for rclone's files
// elsewhere than v keeps them (a change of layout in rclone): serving on
// would leave pending writes unguarded. It runs once the VFS has opened
// (and reloaded) the cache, so it stops a server, it cannot undo that
// reload: what keeps the layout right is TestRootsAreRclones.
func checkJournalRoots(j *cachejournal.Journal, v *vfs.VFS) error {
	dc, _ := v.Stats()["diskCache"].(rc.Params)
	l := j.Layout()
	if dc["path"] != l.Data || dc["pathMeta"] != l.Meta {
		return fmt.Errorf("the write journal expects rclone's cache at %s and %s, the VFS uses %v and %v", l.Data, l.Meta, dc["path"], dc["pathMeta"])
	}
	return nil
}

// sweepJournal drops, every interval until ctx ends, the journal records
// of files no longer pending upload, then calls settle (detachFS's).
func sweepJournal(ctx context.Context, j *cachejournal.Journal, v *vfs.VFS, interval time.Duration, settle func()) {
	every(ctx, interval, func() {
		items, err := queue(v)
		if err != nil {
			return
		}
		queued := make(map[string]bool, len(items))
		for _, q := range items {
			queued[q.Name] = true
		}
		j.Sweep(queued)
		settle()
	})
}

// every calls f every interval until ctx ends.
func every(ctx context.Context, interval time.Duration, f func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

// journalFS records in the write journal what the application is told
// is written, before it is told: at the close (FLUSH) or fsync of a file,
// the byte ranges written into it since the last record (and, for a
// created or truncated file, where the tail that is wholly the
// application's starts); at a truncate, the new size as the start of such
// a tail. A rename is recorded while under way and moves the records when
// it returns; a deletion drops them. A handle that wrote nothing, or a
// file no name leads to any more, records nothing. It sits right above
// trackFS, whose paths it reads. A record it cannot write fails the call
// with EIO: the application must not believe in a write the journal does
// not guard.
type journalFS struct {
	fuse.RawFileSystem
	j     *cachejournal.Journal
	paths *pathTable
	log   *slog.Logger

	mu      sync.Mutex
	pending map[uint64]*cachejournal.Written // node -> writes not yet recorded
}

func newJournalFS(inner fuse.RawFileSystem, j *cachejournal.Journal, paths *pathTable, log *slog.Logger) *journalFS {
	return &journalFS{RawFileSystem: inner, j: j, paths: paths, log: log, pending: map[uint64]*cachejournal.Written{}}
}

func (l *journalFS) Open(c <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	st := l.RawFileSystem.Open(c, in, out)
	// go-fuse does not ask for atomic O_TRUNC, so the kernel truncates
	// with a SETATTR; this covers a server that does.
	if st.Ok() && in.Flags&syscall.O_TRUNC != 0 && in.Flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		l.note(in.NodeId, cachejournal.Written{Tail: true, From: 0})
	}
	return st
}

func (l *journalFS) Create(c <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	st := l.RawFileSystem.Create(c, in, name, out)
	if st.Ok() {
		// Past the size the VFS answers (0 unless a file appeared there
		// meanwhile) everything is the application's.
		l.note(out.NodeId, cachejournal.Written{Tail: true, From: int64(out.Attr.Size)})
	}
	return st
}

func (l *journalFS) Write(c <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	n, st := l.RawFileSystem.Write(c, in, data)
	if st.Ok() && n > 0 {
		var w cachejournal.Written
		w.Ranges.Insert(ranges.Range{Pos: int64(in.Offset), Size: int64(n)})
		l.note(in.NodeId, w)
	}
	return n, st
}

func (l *journalFS) Flush(c <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	st := l.RawFileSystem.Flush(c, in)
	if !st.Ok() {
		return st
	}
	return l.record(in.NodeId)
}

func (l *journalFS) Fsync(c <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	st := l.RawFileSystem.Fsync(c, in)
	if !st.Ok() {
		return st
	}
	return l.record(in.NodeId) // msync of a mapping may come with no close after it
}

func (l *journalFS) SetAttr(c <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	st := l.RawFileSystem.SetAttr(c, in, out)
	if st.Ok() && in.Valid&fuse.FATTR_SIZE != 0 {
		l.note(in.NodeId, cachejournal.Written{Tail: true, From: int64(in.Size)})
		return l.record(in.NodeId)
	}
	return st
}

func (l *journalFS) Rename(c <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	from, ok1 := l.paths.path(in.NodeId)
	to, ok2 := l.paths.path(in.Newdir)
	if !ok1 || !ok2 {
		l.log.Warn("rename under a directory whose path is unknown; refused", "from", oldName, "to", newName)
		return fuse.EIO
	}
	done, err := l.j.Renaming(path.Join(from, oldName), path.Join(to, newName))
	if err != nil {
		l.log.Warn("write journal: rename not recorded; refused", "from", oldName, "to", newName, "err", err)
		return fuse.EIO
	}
	st := l.RawFileSystem.Rename(c, in, oldName, newName)
	if err := done(st.Ok()); err != nil {
		// The rename is done and left to Repair, as after a kill.
		l.log.Warn("write journal: the end of a rename not recorded", "from", oldName, "to", newName, "err", err)
	}
	return st
}

func (l *journalFS) Unlink(c <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return l.removed(h.NodeId, name, l.RawFileSystem.Unlink(c, h, name))
}

func (l *journalFS) Rmdir(c <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return l.removed(h.NodeId, name, l.RawFileSystem.Rmdir(c, h, name))
}

// removed drops the records of a name the application deleted (a stale
// record would only ever be merged into a later file's of that name).
func (l *journalFS) removed(parent uint64, name string, st fuse.Status) fuse.Status {
	if !st.Ok() {
		return st
	}
	if dir, ok := l.paths.path(parent); ok {
		if err := l.j.Removed(path.Join(dir, name)); err != nil {
			l.log.Warn("write journal: a deletion not recorded", "path", path.Join(dir, name), "err", err)
		}
	}
	return st
}

// note adds w to what node id has written and not yet recorded.
func (l *journalFS) note(id uint64, w cachejournal.Written) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if p := l.pending[id]; p != nil {
		p.Add(w)
	} else {
		l.pending[id] = &w
	}
}

// record writes what node id has written and not yet recorded to the
// journal under the node's path. A node no name leads to any more
// (unlinked, or replaced by a rename) has nothing to guard: rclone
// uploads nothing for it.
func (l *journalFS) record(id uint64) fuse.Status {
	l.mu.Lock()
	w := l.pending[id]
	delete(l.pending, id)
	l.mu.Unlock()
	if w == nil {
		return fuse.OK
	}
	p, known := l.paths.attachedPath(id)
	if !known {
		return fuse.OK
	}
	if err := l.j.Wrote(p, *w); err != nil {
		l.note(id, *w) // kept for the next close
		l.log.Warn("write journal: write not recorded", "path", p, "err", err)
		return fuse.EIO
	}
	return fuse.OK
}
