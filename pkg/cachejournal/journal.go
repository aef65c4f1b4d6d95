// Package cachejournal keeps a MOUNT_CACHED volume's pending writes safe
// across a FUSE server killed at any instant.
//
// rclone's VFS cache keeps, for every cached file, a data file and a
// metadata file (its size, which ranges are present, whether it is dirty,
// i.e. waiting for upload). rclone rewrites the metadata file in place
// (create with truncation, then one write), and a server that reloads a
// cache removes every item whose metadata file is missing or does not
// decode, its data file included. So a server killed between the
// truncation and the write, which happens at the close of every written
// file, leaves a dirty file that the next server deletes instead of
// uploading; and a rename killed between moving the data file and moving
// the metadata file leaves the data file with no metadata (both
// observed: docs/architecture.md, "Pending writes survive a killed
// server").
//
// A Journal records, in an append-only file of its own, two facts
// rclone's metadata cannot be trusted to keep:
//   - Wrote: a file holds a write the application was told is done (a
//     close or truncate answered), not yet known to be uploaded;
//   - Renaming: a rename is under way (recorded before it starts, marked
//     done when it returns).
//
// Each record is one line written by one write(2) to a file opened with
// O_APPEND, so a kill leaves it whole or absent, and costs one system
// call (a file per record cost as much as the application's own file).
// The file is rewritten with the live records only (a temporary file,
// then rename) when it has grown well past them.
//
// Repair, run before a VFS opens the cache, uses them: it finishes a
// half-done rename's metadata move, and rewrites the metadata of a
// written file whose metadata is missing or torn as dirty, wholly
// present, with the data file's size and time, so that rclone uploads it.
// Sweep drops the records of files whose metadata says clean (uploaded)
// or whose data is gone (deleted).
//
// The records guard against the process being killed, not the node
// losing power: like rclone's own cache files they are not fsynced.
package cachejournal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	rfs "github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/lib/encoder"
	"github.com/rclone/rclone/lib/ranges"
	"github.com/rclone/rclone/vfs/vfscache"
)

// File is the journal's file inside a volume's cache directory, next to
// rclone's "vfs" and "vfsMeta" directories.
const File = "bucket-csi-journal"

// compactAfter is how many lines past twice the live records the file may
// grow before it is rewritten.
const compactAfter = 4096

// Journal is the write journal of one cache directory. It must be used by
// the one process serving that cache.
type Journal struct {
	path               string
	dataRoot, metaRoot string

	mu       sync.Mutex
	f        *os.File           // O_APPEND
	lines    int                // lines in the file
	written  map[string]bool    // names with a live Wrote record
	renaming map[[2]string]bool // renames recorded and not done
}

// record is one line of the file: exactly one field is set.
type record struct {
	Wrote      string     `json:"w,omitempty"`
	Uploaded   string     `json:"u,omitempty"` // drops a Wrote record
	Renaming   *[2]string `json:"r,omitempty"`
	RenameDone *[2]string `json:"rd,omitempty"`
}

// Open opens the journal of the VFS cache kept under cacheDir for the
// remote f (the Fs given to the VFS) and loads the records left by
// earlier servers.
func Open(cacheDir string, f rfs.Fs) (*Journal, error) {
	cacheDir, err := filepath.Abs(cacheDir) // as rclone's config.SetCacheDir
	if err != nil {
		return nil, err
	}
	rel := toOSPath(cleanName(f.Name() + "/" + f.Root()))
	j := &Journal{
		path:     filepath.Join(cacheDir, File),
		dataRoot: filepath.Join(cacheDir, "vfs", rel),
		metaRoot: filepath.Join(cacheDir, "vfsMeta", rel),
		written:  map[string]bool{},
		renaming: map[[2]string]bool{},
	}
	if err := j.load(); err != nil {
		return nil, fmt.Errorf("write journal: %w", err)
	}
	if err := j.compact(); err != nil {
		return nil, fmt.Errorf("write journal: %w", err)
	}
	return j, nil
}

// Roots are the data and metadata roots of the cache items, as rclone's
// cache lays them out (vfscache.New). The server checks them against what
// the VFS reports, so a change of layout in rclone fails loudly.
func (j *Journal) Roots() (data, meta string) { return j.dataRoot, j.metaRoot }

// Close closes the journal's file.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.f.Close()
}

// Wrote records that name holds a write the application was told is
// done. Call it before answering that close or truncate.
func (j *Journal) Wrote(name string) error {
	name = cleanName(name)
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.written[name] {
		return nil
	}
	if err := j.append(record{Wrote: name}); err != nil {
		return err
	}
	j.written[name] = true
	return nil
}

// Renaming records that oldName is about to be renamed to newName (a file
// or a directory); call done once the rename has returned, whatever its
// outcome. Written records at or below oldName are copied to newName
// first, since the pending upload moves with the file.
func (j *Journal) Renaming(oldName, newName string) (done func(), err error) {
	oldName, newName = cleanName(oldName), cleanName(newName)
	j.mu.Lock()
	defer j.mu.Unlock()
	for name := range j.written {
		if moved, ok := below(name, oldName, newName); ok && !j.written[moved] {
			if err := j.append(record{Wrote: moved}); err != nil {
				return nil, err
			}
			j.written[moved] = true
		}
	}
	pair := [2]string{oldName, newName}
	if err := j.append(record{Renaming: &pair}); err != nil {
		return nil, err
	}
	j.renaming[pair] = true
	return func() {
		j.mu.Lock()
		defer j.mu.Unlock()
		// Not recorded (a full disk): Repair finds nothing to move.
		_ = j.append(record{RenameDone: &pair})
		delete(j.renaming, pair)
	}, nil
}

// Sweep drops the Wrote records of names not pending upload: the
// metadata says clean, or there is no data file. Names in queued (rclone's
// upload queue) are pending and skipped unread.
func (j *Journal) Sweep(queued map[string]bool) {
	j.mu.Lock()
	names := make([]string, 0, len(j.written))
	for name := range j.written {
		if !queued[name] {
			names = append(names, name)
		}
	}
	j.mu.Unlock()
	for _, name := range names {
		j.sweepOne(name)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.lines > 2*(len(j.written)+len(j.renaming))+compactAfter {
		_ = j.compact() // on failure the file keeps growing, still correct
	}
}

// sweepOne drops name's record if it is not pending. The metadata is read
// under the lock, so a Wrote of the same name waits and is not lost.
func (j *Journal) sweepOne(name string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if !j.written[name] {
		return
	}
	info, err := j.meta(name)
	clean := err == nil && !info.Dirty
	if _, serr := os.Stat(j.dataPath(name)); errors.Is(serr, fs.ErrNotExist) || clean {
		if j.append(record{Uploaded: name}) == nil {
			delete(j.written, name)
		}
	}
}

// Repaired is one cache item Repair changed.
type Repaired struct {
	Name   string
	Action string
}

// Repair makes the cache's metadata keep every recorded write, before a
// VFS opens the cache: it finishes the metadata move of renames that did
// not return, then rewrites, as dirty and wholly present, the metadata of
// written files that have data but missing or undecodable metadata. It
// drops Wrote records whose data is gone. It must run while no VFS uses
// the cache.
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
	for name := range j.written {
		fi, err := os.Stat(j.dataPath(name))
		if errors.Is(err, fs.ErrNotExist) {
			delete(j.written, name)
			continue
		} else if err != nil {
			return out, err
		}
		if _, err := j.meta(name); err == nil {
			continue // rclone's metadata is whole: it uploads if dirty
		}
		if err := j.writeMeta(name, fi); err != nil {
			return out, err
		}
		out = append(out, Repaired{Name: name, Action: "metadata rewritten as pending upload"})
	}
	return out, j.compact()
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

// writeMeta replaces name's metadata by one that says the data file fi is
// the whole file and dirty.
func (j *Journal) writeMeta(name string, fi os.FileInfo) error {
	info := vfscache.Info{
		ModTime: fi.ModTime(),
		ATime:   time.Now(),
		Size:    fi.Size(),
		Rs:      ranges.Ranges{{Pos: 0, Size: fi.Size()}},
		Dirty:   true,
	}
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

func (j *Journal) dataPath(name string) string {
	return filepath.Join(j.dataRoot, toOSPath(name))
}

func (j *Journal) metaPath(name string) string {
	return filepath.Join(j.metaRoot, toOSPath(name))
}

// load replays the file into the live sets. A line that does not decode
// (a write cut short by a full disk) is skipped.
func (j *Journal) load() error {
	data, err := os.ReadFile(j.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		var rec record
		if len(line) == 0 || json.Unmarshal(line, &rec) != nil {
			continue
		}
		switch {
		case rec.Wrote != "":
			j.written[rec.Wrote] = true
		case rec.Uploaded != "":
			delete(j.written, rec.Uploaded)
		case rec.Renaming != nil:
			j.renaming[*rec.Renaming] = true
		case rec.RenameDone != nil:
			delete(j.renaming, *rec.RenameDone)
		}
	}
	return nil
}

// compact replaces the file by one holding the live records only and
// opens it for appending. Call with mu held (or before sharing j).
func (j *Journal) compact() error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for name := range j.written {
		if err := enc.Encode(record{Wrote: name}); err != nil {
			return err
		}
	}
	for pair := range j.renaming {
		if err := enc.Encode(record{Renaming: &pair}); err != nil {
			return err
		}
	}
	if err := writeAtomic(j.path, buf.Bytes()); err != nil {
		return err
	}
	f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	if j.f != nil {
		_ = j.f.Close()
	}
	j.f, j.lines = f, len(j.written)+len(j.renaming)
	return nil
}

// append writes rec as one line with one write(2). Call with mu held.
func (j *Journal) append(rec record) error {
	line, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if _, err := j.f.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	j.lines++
	return nil
}

// writeAtomic replaces p by data: a reader or a kill sees the old file or
// the new one, never a part.
func writeAtomic(p string, data []byte) error {
	tmp := filepath.Join(filepath.Dir(p), ".tmp-"+filepath.Base(p))
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// below maps name at or below oldDir to the same place below newDir.
func below(name, oldDir, newDir string) (string, bool) {
	switch {
	case name == oldDir:
		return newDir, true
	case strings.HasPrefix(name, oldDir+"/"):
		return newDir + name[len(oldDir):], true
	}
	return "", false
}

// cleanName is vfscache's clean: no leading or trailing slash, "" for the
// root.
func cleanName(name string) string {
	name = path.Clean(strings.Trim(name, "/"))
	if name == "." || name == "/" {
		return ""
	}
	return name
}

// toOSPath is vfscache's toOSPath: a remote path in rclone's standard
// encoding to a path on this OS.
func toOSPath(name string) string {
	return filepath.FromSlash(encoder.OS.FromStandardPath(name))
}
