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
	"github.com/rclone/rclone/vfs"

	"github.com/bucket-csi/bucket-csi/pkg/cachejournal"
)

// openJournal opens the write journal of a MOUNT_CACHED volume's cache and
// repairs what a killed server left, before the VFS opens the cache
// (cachejournal explains why rclone alone would lose those files).
func openJournal(cacheDir string, f fs.Fs, log *slog.Logger) (*cachejournal.Journal, error) {
	j, err := cachejournal.Open(cacheDir, f)
	if err != nil {
		return nil, err
	}
	repaired, err := j.Repair()
	for _, r := range repaired {
		log.Warn("cache repaired after a server was killed: the file is uploaded", "path", r.Name, "action", r.Action)
	}
	if err != nil {
		_ = j.Close()
		return nil, fmt.Errorf("repairing the cache after a killed server: %w", err)
	}
	return j, nil
}

// checkJournalRoots fails when the journal would look for rclone's files
// elsewhere than v keeps them (a change of layout in rclone): serving on
// would leave pending writes unguarded.
func checkJournalRoots(j *cachejournal.Journal, v *vfs.VFS) error {
	dc, _ := v.Stats()["diskCache"].(rc.Params)
	data, meta := j.Roots()
	if dc["path"] != data || dc["pathMeta"] != meta {
		return fmt.Errorf("the write journal expects rclone's cache at %s and %s, the VFS uses %v and %v", data, meta, dc["path"], dc["pathMeta"])
	}
	return nil
}

// sweepJournal drops, every interval until ctx ends, the journal records
// of files no longer pending upload.
func sweepJournal(ctx context.Context, j *cachejournal.Journal, v *vfs.VFS, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		items, err := queue(v)
		if err != nil {
			continue
		}
		queued := make(map[string]bool, len(items))
		for _, q := range items {
			queued[q.Name] = true
		}
		j.Sweep(queued)
	}
}

// journalFS records in the write journal each write the application is
// told is done, before it is told: the close (FLUSH) of a handle opened
// for writing, a truncate by path, and a rename (while under way). It
// sits right above trackFS, whose paths it reads. A record it cannot
// write fails the call with EIO: the application must not believe in a
// write the journal does not guard.
type journalFS struct {
	fuse.RawFileSystem
	j     *cachejournal.Journal
	paths *pathTable
	log   *slog.Logger

	mu      sync.Mutex
	writers map[uint64]bool // open handles that may write
}

func newJournalFS(inner fuse.RawFileSystem, j *cachejournal.Journal, paths *pathTable, log *slog.Logger) *journalFS {
	return &journalFS{RawFileSystem: inner, j: j, paths: paths, log: log, writers: map[uint64]bool{}}
}

func (l *journalFS) Open(c <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	st := l.RawFileSystem.Open(c, in, out)
	if st.Ok() && in.Flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		l.setWriter(out.Fh, true)
	}
	return st
}

func (l *journalFS) Create(c <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	st := l.RawFileSystem.Create(c, in, name, out)
	if st.Ok() {
		l.setWriter(out.Fh, true)
	}
	return st
}

func (l *journalFS) Flush(c <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	st := l.RawFileSystem.Flush(c, in)
	if !st.Ok() {
		return st
	}
	l.mu.Lock()
	writer := l.writers[in.Fh]
	l.mu.Unlock()
	if !writer {
		return st
	}
	return l.wrote(in.NodeId)
}

func (l *journalFS) Release(c <-chan struct{}, in *fuse.ReleaseIn) {
	l.setWriter(in.Fh, false)
	l.RawFileSystem.Release(c, in)
}

func (l *journalFS) SetAttr(c <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	st := l.RawFileSystem.SetAttr(c, in, out)
	if st.Ok() && in.Valid&fuse.FATTR_SIZE != 0 {
		return l.wrote(in.NodeId)
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
	defer done()
	return l.RawFileSystem.Rename(c, in, oldName, newName)
}

// wrote records node id as written.
func (l *journalFS) wrote(id uint64) fuse.Status {
	p, ok := l.paths.path(id)
	if !ok {
		l.log.Warn("write journal: a written file's path is unknown", "node", id)
		return fuse.EIO
	}
	if err := l.j.Wrote(p); err != nil {
		l.log.Warn("write journal: write not recorded", "path", p, "err", err)
		return fuse.EIO
	}
	return fuse.OK
}

func (l *journalFS) setWriter(fh uint64, on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if on {
		l.writers[fh] = true
	} else {
		delete(l.writers, fh)
	}
}
