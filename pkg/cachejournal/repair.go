package cachejournal

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"syscall"
	"time"

	"github.com/rclone/rclone/lib/ranges"
	"github.com/rclone/rclone/vfs/vfscache"
	"golang.org/x/sys/unix"
)

// Repaired is one cache item Repair changed, or left to rclone for a
// reason worth a log line (Failed: an error on this item).
type Repaired struct {
	Name   string
	Action string
	Failed bool
}

// Repair makes the cache's metadata keep every recorded write, before a
// VFS opens the cache:
//   - a rename that did not return is finished (finishRename);
//   - a recorded file whose metadata decodes and is dirty gets the
//     recorded ranges added to the metadata's present ranges (rclone
//     would download the bucket's bytes over them);
//   - a recorded file whose metadata is missing, does not decode, or may
//     be an earlier file's (a Detach not reattached) gets new metadata:
//     dirty, the data file's size and time, and present exactly where the
//     record says;
//   - a record whose data file is gone, whose metadata says clean
//     (uploaded since), or whose written ranges are holes in the data
//     file (the file was dropped and fetched again since) is dropped.
//
// It must run while no VFS uses the cache. It does not fail as a whole:
// an item it fails on is left to rclone and reported with Failed (a
// server that cannot serve could not drain the other files either).
func (j *Journal) Repair() []Repaired {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []Repaired
	for pair := range j.renaming {
		out = append(out, j.finishRename(pair[0], pair[1])...)
		delete(j.renaming, pair)
	}
	for name, w := range j.written {
		action, keep, err := j.repairOne(name, w)
		switch {
		case err != nil:
			out = append(out, Repaired{Name: name, Action: "not repaired: " + err.Error(), Failed: true})
		case action != "":
			out = append(out, Repaired{Name: name, Action: action})
		}
		if !keep {
			j.drop(name)
		} else if err == nil && w.Mapped {
			w.Mapped = false // the metadata now says dirty
			j.written[name] = w
		}
	}
	clear(j.detached) // no item of the server that detached them lives on
	_ = j.compact()   // on failure the file as it is replays to the same state
	return out
}

// repairOne repairs name's metadata from w; keep is false when the record
// no longer applies.
func (j *Journal) repairOne(name string, w Written) (action string, keep bool, err error) {
	fi, err := os.Stat(j.cache.DataPath(name))
	if gone(err) {
		return "", false, nil
	} else if err != nil {
		return "", true, err
	}
	info, merr := j.cache.Info(name)
	if j.detached[name] > 0 && merr == nil {
		// An earlier file's item may have saved its metadata over this
		// file's (Detach): what is there says nothing of this file.
		merr = errors.New("metadata of a detached name")
	}
	if w.Mapped && merr == nil && !info.Dirty {
		return j.repairMapped(name, info, fi)
	}
	if merr == nil && !info.Dirty {
		return "", false, nil
	}
	size := fi.Size()
	if w.Mapped && merr != nil {
		// The file was whole when the kernel was given it: where it has
		// no holes, every byte is the cache's.
		w = w.Merge(Written{Ranges: ranges.Ranges{{Pos: 0, Size: size}}})
	}
	ok, err := backed(j.cache.DataPath(name), w, size)
	if err != nil {
		return "", true, err
	}
	if !ok {
		return "left to rclone: the recorded writes are holes in the data file", false, nil
	}
	var present ranges.Ranges
	for _, r := range w.Ranges {
		r.Clip(size)
		if !r.IsEmpty() {
			present.Insert(r)
		}
	}
	if w.Tail && w.From < size {
		present.Insert(ranges.Range{Pos: w.From, Size: size - w.From})
	}
	if merr == nil {
		merged := append(ranges.Ranges(nil), info.Rs...)
		for _, r := range present {
			merged.Insert(r)
		}
		if merged.Equal(info.Rs) {
			return "", true, nil
		}
		info.Rs = merged
		return "written ranges restored to the metadata", true, j.writeMeta(name, info)
	}
	info = vfscache.Info{ModTime: fi.ModTime(), ATime: time.Now(), Size: size, Rs: present, Dirty: true}
	return "metadata rewritten as pending upload", true, j.writeMeta(name, info)
}

// repairMapped marks for upload a Mapped file whose metadata says clean:
// a shared mapping may have written it after its last upload. Only a file
// still wholly present is, as it was when the kernel was given it; else
// rclone replaced it since, and the mapping wrote a file no longer there.
func (j *Journal) repairMapped(name string, info vfscache.Info, fi fs.FileInfo) (string, bool, error) {
	if fi.Size() != info.Size || !info.Rs.Present(ranges.Range{Pos: 0, Size: info.Size}) {
		return "", false, nil
	}
	info.Dirty = true
	return "marked for upload: a shared mapping may have written it", true, j.writeMeta(name, info)
}

// gone reports whether err says a path is not there (a missing file or a
// parent that is now a file).
func gone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// backed reports whether every written range of w below size (and below
// w's tail, which may hold holes: zeros the application made) is data in
// the file at p, not a hole.
func backed(p string, w Written, size int64) (bool, error) {
	limit := size
	if w.Tail {
		limit = min(limit, w.From)
	}
	f, err := os.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	for _, r := range w.Ranges {
		r.Clip(limit)
		if r.IsEmpty() {
			continue
		}
		hole, err := unix.Seek(int(f.Fd()), r.Pos, unix.SEEK_HOLE)
		if err != nil || hole < r.End() {
			return false, nil
		}
	}
	return true, nil
}

// finishRename completes a rename that did not return (a kill inside
// it, or a done that could not record), from what is on disk. For every
// data file at or below newName whose counterpart below oldName has no
// data file (it moved):
//   - if that counterpart still has metadata, the kill came between
//     rclone's two steps (item.rename: the data file, then the metadata
//     file): the metadata moves too, replacing what is there (the metadata
//     of a file the rename replaced);
//   - if the counterpart has a record, it becomes the moved file's record,
//     replacing the one there (Renaming's done did not run or not to the
//     end).
func (j *Journal) finishRename(oldName, newName string) []Repaired {
	var out []Repaired
	root := j.cache.DataPath(newName)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if gone(err) {
			return nil
		} else if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if _, err := os.Stat(filepath.Join(j.cache.DataPath(oldName), rel)); !gone(err) {
			return nil // the data did not move
		}
		oldN, newN := path.Join(oldName, filepath.ToSlash(rel)), path.Join(newName, filepath.ToSlash(rel))
		from, to := j.cache.MetaPath(oldN), j.cache.MetaPath(newN)
		if _, err := os.Stat(from); err == nil {
			if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
				return err
			}
			if err := os.Rename(from, to); err != nil {
				return err
			}
			out = append(out, Repaired{Name: newN, Action: "metadata moved to finish a rename"})
		}
		if w, ok := j.written[oldN]; ok {
			j.drop(newN)
			j.set(newN, w)
			j.drop(oldN)
		}
		return nil
	})
	if err != nil {
		out = append(out, Repaired{Name: newName, Action: "rename not finished: " + err.Error(), Failed: true})
	}
	return out
}

// writeMeta replaces name's metadata by info.
func (j *Journal) writeMeta(name string, info vfscache.Info) error {
	data, err := json.Marshal(info)
	if err != nil {
		return err
	}
	p := j.cache.MetaPath(name)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	return j.writeAtomic(p, data)
}
