package copier

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"iter"
	"os"
	"path"
	"path/filepath"
	"strings"

	rfs "github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/walk"

	"github.com/bucket-csi/bucket-csi/pkg/bucket"
)

// heldObjects bounds the listed objects a copy keeps to download from
// without asking the store again; objects beyond it are looked up (one
// HEAD) when their turn comes. It bounds the memory of huge listings.
const heldObjects = 1 << 16

// list adds every object of f that can be a file to s and leaves out (and
// counts) the rest.
func (r *run) list(ctx context.Context, s *sorter) error {
	var addErr error
	err := walk.ListR(ctx, r.f, "", true, -1, walk.ListObjects, func(entries rfs.DirEntries) error {
		for _, e := range entries {
			o, ok := e.(rfs.Object)
			if !ok {
				continue
			}
			key := o.Remote()
			if r.opt.HideMetaDir && bucket.IsMeta(key) {
				continue
			}
			if strings.HasSuffix(key, "/") && o.Size() == 0 {
				continue // a directory marker
			}
			p, why := localPath(key)
			if why != "" {
				r.skips.add(key, why)
				continue
			}
			if len(r.objs) < heldObjects {
				r.objs[p] = o
			}
			if err := s.add(record{Path: p, Size: o.Size(), FP: rfs.Fingerprint(ctx, o, true)}); err != nil {
				addErr = err // kept: a walk may call again after an error
				return err
			}
		}
		return nil
	})
	if addErr != nil {
		return addErr // the copy's own files: no room, or the disk failed
	}
	if err != nil && ctx.Err() == nil && !isLocal(err) {
		return listingError(err)
	}
	return err
}

// isLocal reports whether err came from the copy's own files, not the store.
func isLocal(err error) bool {
	var pe *fs.PathError
	return errors.As(err, &pe)
}

// errStop ends an iteration early.
var errStop = errors.New("stop")

// pull turns a sorter into a pull iterator; err reports its failure after
// the iterator ends.
func pull(s *sorter, err *error) (next func() (*record, bool), stop func()) {
	return iter.Pull(func(yield func(*record) bool) {
		if e := s.each(func(r *record) error {
			if !yield(r) {
				return errStop
			}
			return nil
		}); e != nil && e != errStop {
			*err = e
		}
	})
}

// join walks the listed objects in path order, leaves out keys that are
// also directories of other keys (the directory wins), and decides for
// each file whether it must be downloaded: not when the old manifest holds
// it with the same fingerprint and the local file is untouched since
// (those entries go into the new manifest). The plan is written to
// planPath in path order. sizes are what the plan asks room for, but
// Bookkeeping: the files' and directories' blocks, and what the manifest
// lines of the files to download will take at most.
func (r *run) join(listed, old *sorter, man *manifest, planPath string, block int64) (res Result, sizes Sizes, err error) {
	w, err := createRecords(planPath, r.meter)
	if err != nil {
		return res, sizes, err
	}
	lastDir := ""
	var oldErr error
	next, stop := pull(old, &oldErr)
	defer stop()
	var cur record
	more := true
	advance := func() {
		var p *record
		if p, more = next(); more {
			cur = *p
		}
	}
	advance()
	// lookup returns the last manifest entry about path.
	lookup := func(path string) (record, bool) {
		for more && comparePaths(cur.Path, path) < 0 {
			advance()
		}
		var found record
		ok := false
		for more && cur.Path == path {
			found, ok = cur, true
			advance()
		}
		return found, ok
	}
	emit := func(rec record) error {
		e, ok := lookup(rec.Path)
		rec.Todo = !ok || e.FP != rec.FP || e.Size != rec.Size || !r.untouched(rec.Path, e)
		if !rec.Todo {
			if err := man.add(entry{Path: rec.Path, Fingerprint: e.FP, Size: e.Size, MTimeNanos: e.MTime}); err != nil {
				return err
			}
		}
		// The plan is in path order, so a directory's entries follow it:
		// the directories this file needs beyond the last file's are new.
		dirs := newDirs(lastDir, path.Dir(rec.Path))
		lastDir = path.Dir(rec.Path)
		space := addSpace(footprint(rec.Size, block), dirs*block)
		res.Files++
		res.Bytes += rec.Size
		res.DiskBytes = addSpace(res.DiskBytes, space)
		if rec.Todo {
			res.Downloaded++
			res.DownloadedBytes += rec.Size
			res.DiskNeed = addSpace(res.DiskNeed, space)
			sizes.Files += 1 + dirs
			sizes.BookkeepingNeed = addSpace(sizes.BookkeepingNeed, entryBytes(rec.Path, rec.FP))
		}
		return w.write(&rec)
	}
	var prev record
	havePrev := false
	err = listed.each(func(rec *record) error {
		if havePrev {
			switch {
			case rec.Path == prev.Path:
				r.skips.add(rec.Path, "listed twice")
				return nil
			case isUnder(rec.Path, prev.Path):
				r.skips.add(prev.Path, "is also a directory prefix of other keys")
				delete(r.objs, prev.Path)
			default:
				if err := emit(prev); err != nil {
					return err
				}
			}
		}
		prev, havePrev = *rec, true
		return nil
	})
	if err == nil && havePrev {
		err = emit(prev)
	}
	stop()
	if err == nil {
		err = oldErr
	}
	if cerr := w.close(); err == nil {
		err = cerr
	}
	sizes.Total, sizes.Need = res.DiskBytes, res.DiskNeed
	return res, sizes, err
}

// untouched reports whether the local file at path is still the one the
// manifest entry e recorded.
func (r *run) untouched(path string, e record) bool {
	st, err := os.Lstat(filepath.Join(r.dest, path))
	return err == nil && st.Mode().IsRegular() && st.Size() == e.Size && st.ModTime().UnixNano() == e.MTime
}

// removeExtra deletes what is under dest and not in the plan (objects gone
// from the bucket, leftovers of interrupted downloads, files a pod added,
// a directory where the plan has a file, a directory no planned file is
// in: the plan charges only the directories its files need), walking dest
// and the plan side by side: both are in path order.
func removeExtra(dest, planPath string) error {
	rr, err := openRecords(planPath)
	if err != nil {
		return err
	}
	defer rr.close()
	var cur record
	more := true
	advance := func() error {
		err := rr.next(&cur)
		if err == io.EOF {
			more = false
			return nil
		}
		return err
	}
	if err := advance(); err != nil {
		return err
	}
	return filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dest {
			return err
		}
		rel := filepath.ToSlash(p[len(dest)+1:])
		for more && comparePaths(cur.Path, rel) < 0 {
			if err := advance(); err != nil {
				return err
			}
		}
		planned := more && cur.Path == rel
		switch {
		case d.IsDir() && (planned || !more || !isUnder(cur.Path, rel)):
			if err := os.RemoveAll(p); err != nil {
				return err
			}
			return filepath.SkipDir
		case !d.IsDir() && !planned:
			return os.Remove(p)
		}
		return nil
	})
}

// newDirs is the number of directories of dir (slash-separated, "." or
// "" for none) below those it shares with last: what a file in dir adds
// when the files before it were in last.
func newDirs(last, dir string) int64 {
	parts := func(d string) []string {
		if d == "." || d == "" {
			return nil
		}
		return strings.Split(d, "/")
	}
	l, d := parts(last), parts(dir)
	shared := 0
	for shared < len(l) && shared < len(d) && l[shared] == d[shared] {
		shared++
	}
	return int64(len(d) - shared)
}
