package cachejournal

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/rclone/rclone/lib/ranges"
	"github.com/rclone/rclone/vfs/vfscache"
	"golang.org/x/sys/unix"
)

// Repaired is one cache item Repair looked at and changed, or left to
// rclone for a reason worth a log line.
type Repaired struct {
	Name   string
	Action string
}

// Repair makes the cache's metadata keep every recorded write, before a
// VFS opens the cache:
//   - a rename that did not return gets its metadata moved (finishRename);
//   - a recorded file whose metadata decodes and is dirty gets the
//     recorded ranges added to the metadata's present ranges (rclone
//     would download the bucket's bytes over them);
//   - a recorded file whose metadata is missing or does not decode gets
//     new metadata: dirty, the data file's size and time, and present
//     exactly where the record says;
//   - a record whose data file is gone, whose metadata says clean
//     (uploaded since), or whose written ranges are holes in the data
//     file (the file was dropped and fetched again since) is dropped.
//
// It must run while no VFS uses the cache. An error leaves the cache as it
// was for the items not reached; the server must not open the cache then.
func (j *Journal) Repair() ([]Repaired, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []Repaired
	for pair := range j.renaming {
		moved, err := j.finishRename(pair[0], pair[1])
		out = append(out, moved...)
		if err != nil {
			return out, err
		}
		delete(j.renaming, pair)
	}
	for name, w := range j.written {
		r, keep, err := j.repairOne(name, w)
		if err != nil {
			return out, err
		}
		if r != "" {
			out = append(out, Repaired{Name: name, Action: r})
		}
		if !keep {
			j.drop(name)
		}
	}
	return out, j.compact()
}

// repairOne repairs name's metadata from w; keep is false when the record
// no longer applies.
func (j *Journal) repairOne(name string, w Written) (action string, keep bool, err error) {
	fi, err := os.Stat(j.dataPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	} else if err != nil {
		return "", true, err
	}
	info, merr := j.meta(name)
	if merr == nil && !info.Dirty {
		return "", false, nil
	}
	size := fi.Size()
	ok, err := backed(j.dataPath(name), w, size)
	if err != nil {
		return "", true, err
	}
	if !ok {
		return "left to rclone: the recorded writes are holes in the data file", false, nil
	}
	present := w.Ranges
	if w.Tail && w.From < size {
		present = append(ranges.Ranges(nil), present...)
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
	info = vfscache.Info{ModTime: fi.ModTime(), ATime: time.Now(), Size: size, Dirty: true}
	for _, r := range present {
		r.Clip(size)
		if !r.IsEmpty() {
			info.Rs.Insert(r)
		}
	}
	return "metadata rewritten as pending upload", true, j.writeMeta(name, info)
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

// finishRename completes a rename killed between rclone's two steps
// (item.rename: the data file, then the metadata file): every data file at
// or below newName whose counterpart below oldName has metadata but no
// data file gets that metadata, replacing what is there (the metadata of
// a file the rename replaced).
func (j *Journal) finishRename(oldName, newName string) ([]Repaired, error) {
	var out []Repaired
	root := j.dataPath(newName)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		} else if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		from := filepath.Join(j.metaPath(oldName), rel)
		if _, err := os.Stat(from); err != nil {
			return nil // moved already, or never had metadata
		}
		if _, err := os.Stat(filepath.Join(j.dataPath(oldName), rel)); !errors.Is(err, fs.ErrNotExist) {
			return nil // the data did not move
		}
		to := filepath.Join(j.metaPath(newName), rel)
		if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
			return err
		}
		if err := os.Rename(from, to); err != nil {
			return err
		}
		out = append(out, Repaired{Name: path.Join(newName, filepath.ToSlash(rel)), Action: "metadata moved to finish a rename"})
		return nil
	})
	return out, err
}

// writeMeta replaces name's metadata by info.
func (j *Journal) writeMeta(name string, info vfscache.Info) error {
	data, err := json.Marshal(info)
	if err != nil {
		return err
	}
	p := j.metaPath(name)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	return writeAtomic(p, data)
}

// meta reads and decodes name's rclone metadata.
func (j *Journal) meta(name string) (vfscache.Info, error) {
	var info vfscache.Info
	data, err := os.ReadFile(j.metaPath(name))
	if err == nil {
		err = json.Unmarshal(data, &info)
	}
	return info, err
}
