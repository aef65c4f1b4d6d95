// Package cachejournal keeps a MOUNT_CACHED volume's pending writes safe
// across a FUSE server killed at any instant.
//
// rclone's VFS cache keeps, for every cached file, a data file and a
// metadata file (its size, which byte ranges are present, whether it is
// dirty, i.e. waiting for upload). rclone rewrites the metadata file in
// place (create with truncation, then one write), and a server that
// reloads a cache removes every item whose metadata file is missing or
// does not decode, its data file included; it saves the ranges an
// application wrote only at the file's first write and at its final
// release, and downloads, at reload, every range its metadata does not
// list, over what is in the data file. So a kill of the server could
// delete a file the application had closed (a kill inside a metadata
// rewrite), put the bucket's old bytes over bytes written into an existing
// file (a kill before the release's save), or leave a renamed file's data
// without metadata (a kill between rclone's two moves).
// docs/architecture.md, "Pending writes survive a killed server", has the
// evidence.
//
// A Journal records what rclone's metadata cannot be trusted to keep, in
// an append-only file of its own:
//   - Wrote: for each file with writes the application was told are done
//     (a close or truncate answered) and not yet known to be uploaded, the
//     byte ranges written and the offset from which the whole tail is the
//     application's (a created or truncated file); and, for a file the
//     kernel was given for a read-write open through FUSE passthrough,
//     that its data file may hold bytes written through a shared mapping
//     (Mapped, cleared by Settled);
//   - Renaming: a rename under way (recorded before it starts, marked done
//     when it returns, when the moved files' records replace those of the
//     names it replaced);
//   - Dropped: a file uploaded (its metadata says clean), deleted or
//     replaced;
//   - Detached: a name whose file lost it while rclone held the file
//     (open, or queued for upload), so that rclone's item of that file may
//     still save its metadata over the metadata of a file there now
//     (Detach says how), until Reattached.
//
// Each record is one line written by one write(2) to a file opened with
// O_APPEND, so a kill leaves it whole or absent, and it costs one system
// call (a file per record cost as much as the application's own file). The
// file is rewritten with the live records only (a temporary file, then
// rename) when it has grown well past them.
//
// Repair, run before a VFS opens the cache, finishes half-done renames and
// puts the recorded ranges into the metadata of every recorded file that
// is still dirty, rewriting a missing or torn metadata file as dirty, so
// rclone uploads the file with the written bytes and downloads only the
// rest. It never declares present a range it has no record of, and leaves
// a file alone whose recorded ranges are holes in its data file (not the
// file that was written). A Mapped file whose metadata says clean is
// marked dirty, so it is uploaded again with whatever a mapping wrote.
// Sweep drops the records of files whose metadata says clean (uploaded)
// or whose data is gone (deleted), except Mapped ones.
//
// The records guard against the process being killed, not the node
// losing power: like rclone's own cache files they are not fsynced (only
// a replacement of a whole file is, before its rename: writeAtomic).
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

	rfs "github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/lib/ranges"
)

// File is the journal's file inside a volume's cache directory, next to
// rclone's "vfs" and "vfsMeta" directories.
const File = "bucket-csi-journal"

// compactAfter is how many lines past twice the live records the file may
// grow before it is rewritten.
const compactAfter = 4096

// Written is what the journal knows of a file's acknowledged writes since
// it was last known clean. The zero value says nothing.
type Written struct {
	// Ranges are the byte ranges the application wrote.
	Ranges ranges.Ranges
	// Tail says every byte from From to the end of the file is written or
	// a zero the application made: the file was created, truncated or
	// extended there.
	Tail bool
	From int64
	// Mapped says the data file may hold bytes written through a shared
	// mapping of it that rclone's metadata does not know of (FUSE
	// passthrough handed the kernel the cache file for a read-write
	// open). The server clears it with Settled once it has marked the
	// file for upload after the last mapping ended; until then Sweep
	// keeps the record and Repair marks the file for upload.
	Mapped bool
}

// covers reports whether w already says all that o says.
func (w Written) covers(o Written) bool {
	for _, r := range o.Ranges {
		if !w.Ranges.Present(r) {
			return false
		}
	}
	return (!o.Tail || (w.Tail && w.From <= o.From)) && (!o.Mapped || w.Mapped)
}

// Merge returns what w and o say together.
func (w Written) Merge(o Written) Written {
	out := Written{Ranges: append(ranges.Ranges(nil), w.Ranges...), Tail: w.Tail, From: w.From, Mapped: w.Mapped}
	out.Add(o)
	return out
}

// Add makes w say what o says too, in place.
func (w *Written) Add(o Written) {
	for _, r := range o.Ranges {
		w.Ranges.Insert(r)
	}
	if o.Tail && (!w.Tail || o.From < w.From) {
		w.Tail, w.From = true, o.From
	}
	w.Mapped = w.Mapped || o.Mapped
}

// Journal is the write journal of one cache directory. It must be used by
// the one process serving that cache.
type Journal struct {
	root  string // the cache directory
	path  string
	cache Layout

	mu       sync.Mutex
	f        *os.File // O_APPEND
	broken   bool     // the last append failed: the next starts a new line
	lines    int      // lines in the file
	written  map[string]Written
	dirs     map[string]int // directories above written names: how many
	renaming map[[2]string]bool
	detached map[string]int // name -> earlier files' items that may still save there (Detach)
}

// record is one line of the file: one kind of record per line.
type record struct {
	Wrote      string     `json:"w,omitempty"`
	Ranges     [][2]int64 `json:"rs,omitempty"` // with Wrote: pos, size
	From       *int64     `json:"f,omitempty"`  // with Wrote
	Mapped     *bool      `json:"m,omitempty"`  // with Wrote: sets Written.Mapped (false: Settled)
	Dropped    string     `json:"d,omitempty"`  // drops a Wrote record: uploaded, deleted, replaced
	Renaming   *[2]string `json:"r,omitempty"`
	RenameDone *[2]string `json:"rd,omitempty"`
	Detached   string     `json:"x,omitempty"`  // see Detach
	Reattached string     `json:"xd,omitempty"` // ends one Detached
}

// Open opens the journal of the VFS cache kept under cacheDir for the
// remote f (the Fs given to the VFS) and loads the records left by
// earlier servers.
func Open(cacheDir string, f rfs.Fs) (*Journal, error) {
	cacheDir, err := filepath.Abs(cacheDir) // as rclone's config.SetCacheDir
	if err != nil {
		return nil, err
	}
	cache, err := LayoutOf(cacheDir, f)
	if err != nil {
		return nil, err
	}
	j := &Journal{
		root:     cacheDir,
		path:     filepath.Join(cacheDir, File),
		cache:    cache,
		written:  map[string]Written{},
		dirs:     map[string]int{},
		renaming: map[[2]string]bool{},
		detached: map[string]int{},
	}
	if err := j.load(); err != nil {
		return nil, fmt.Errorf("write journal: %w", err)
	}
	if tmps, err := filepath.Glob(filepath.Join(cacheDir, ".journal-tmp-*")); err == nil {
		for _, t := range tmps { // left by a kill inside writeAtomic
			_ = os.Remove(t)
		}
	}
	if err := j.compact(); err != nil {
		// Appending to the file as it is stays correct.
		if j.f, err = os.OpenFile(j.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
			return nil, fmt.Errorf("write journal: %w", err)
		}
		j.broken = true
	}
	return j, nil
}

// Layout is the layout of the rclone cache the journal guards.
func (j *Journal) Layout() Layout { return j.cache }

// Close closes the journal's file.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.f.Close()
}

// Wrote records w for name: writes the application was told are done.
// Call it before answering that close or truncate.
func (j *Journal) Wrote(name string, w Written) error {
	name = cleanName(name)
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.wrote(name, w)
}

// wrote is Wrote with mu held.
func (j *Journal) wrote(name string, w Written) error {
	old := j.written[name]
	if _, ok := j.written[name]; ok && old.covers(w) {
		return nil
	}
	merged := old.Merge(w)
	if err := j.append(wroteRecord(name, merged)); err != nil {
		return err
	}
	j.set(name, merged)
	return nil
}

// Mapped records that name's data file may from now on hold bytes written
// through a shared mapping (Written.Mapped). Call it before answering the
// open that allows the mapping.
func (j *Journal) Mapped(name string) error {
	return j.Wrote(name, Written{Mapped: true})
}

// Settled clears Written.Mapped of name's record: the file was marked for
// upload (rclone's metadata says dirty) after its last mapping ended.
func (j *Journal) Settled(name string) error {
	name = cleanName(name)
	j.mu.Lock()
	defer j.mu.Unlock()
	w, ok := j.written[name]
	if !ok || !w.Mapped {
		return nil
	}
	w.Mapped = false
	rec := wroteRecord(name, w)
	rec.Mapped = new(bool)
	if err := j.append(rec); err != nil {
		return err
	}
	j.written[name] = w
	return nil
}

// Renaming records that oldName is about to be renamed to newName (a file
// or a directory). Call done once the rename has returned, with whether
// it succeeded: then the records at or below newName (files the rename
// replaced) are dropped and those at or below oldName move there, with
// the files and their pending uploads. A done that fails to record leaves
// the rename to Repair, like a kill would.
func (j *Journal) Renaming(oldName, newName string) (done func(ok bool) error, err error) {
	oldName, newName = cleanName(oldName), cleanName(newName)
	pair := [2]string{oldName, newName}
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.append(record{Renaming: &pair}); err != nil {
		return nil, err
	}
	j.renaming[pair] = true
	return func(ok bool) error {
		j.mu.Lock()
		defer j.mu.Unlock()
		if ok {
			if err := j.move(oldName, newName); err != nil {
				return err
			}
		}
		if err := j.append(record{RenameDone: &pair}); err != nil {
			return err
		}
		delete(j.renaming, pair)
		return nil
	}, nil
}

// move makes the records at or below oldName those of the same places
// below newName, replacing what newName had. The lines go in an order a
// kill can cut anywhere: Repair redoes the move from what is left.
func (j *Journal) move(oldName, newName string) error {
	for _, name := range j.at(newName) {
		if err := j.forget(name); err != nil {
			return err
		}
	}
	olds := j.at(oldName)
	for _, name := range olds {
		moved, _ := below(name, oldName, newName)
		w := j.written[name]
		if err := j.append(wroteRecord(moved, w)); err != nil {
			return err
		}
		j.set(moved, w)
	}
	for _, name := range olds {
		if err := j.forget(name); err != nil {
			return err
		}
	}
	return nil
}

// Removed drops the records at or below name: the application deleted it.
func (j *Journal) Removed(name string) error {
	name = cleanName(name)
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, n := range j.at(name) {
		if err := j.forget(n); err != nil {
			return err
		}
	}
	return nil
}

// at lists the recorded names at or below name.
func (j *Journal) at(name string) []string {
	var out []string
	if _, ok := j.written[name]; ok {
		out = append(out, name)
	}
	if j.dirs[name] > 0 {
		for n := range j.written {
			if strings.HasPrefix(n, name+"/") {
				out = append(out, n)
			}
		}
	}
	return out
}

// forget drops name's record, on disk and in memory.
func (j *Journal) forget(name string) error {
	if err := j.append(record{Dropped: name}); err != nil {
		return err
	}
	j.drop(name)
	return nil
}

// Sweep drops the records of names not pending upload: the metadata says
// clean, or there is no data file. Names in queued (rclone's upload
// queue), names a rename under way touches and detached names (Detach)
// are skipped unread.
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
	if j.lines > 2*(len(j.written)+len(j.renaming)+len(j.detached))+compactAfter {
		_ = j.compact() // on failure the file keeps growing, still correct
	}
}

// sweepOne drops name's record if it is not pending. The metadata is read
// under the lock, so a Wrote of the same name waits and is not lost.
func (j *Journal) sweepOne(name string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if w, ok := j.written[name]; !ok || w.Mapped || j.inRename(name) || j.detached[name] > 0 {
		return // a mapped file's metadata says clean: that is the point; a detached name's may be another file's
	}
	info, err := j.cache.Info(name)
	clean := err == nil && !info.Dirty
	if _, serr := os.Stat(j.cache.DataPath(name)); gone(serr) || clean {
		_ = j.forget(name) // kept on failure: swept again later
	}
}

// inRename reports whether a rename under way moves name or onto it.
func (j *Journal) inRename(name string) bool {
	for pair := range j.renaming {
		if _, ok := below(name, pair[0], ""); ok {
			return true
		}
		if _, ok := below(name, pair[1], ""); ok {
			return true
		}
	}
	return false
}

// set makes w name's record in memory.
func (j *Journal) set(name string, w Written) {
	if _, ok := j.written[name]; !ok {
		for d := path.Dir(name); d != "." && d != "/"; d = path.Dir(d) {
			j.dirs[d]++
		}
	}
	j.written[name] = w
}

// drop forgets name's record in memory.
func (j *Journal) drop(name string) {
	if _, ok := j.written[name]; !ok {
		return
	}
	delete(j.written, name)
	for d := path.Dir(name); d != "." && d != "/"; d = path.Dir(d) {
		if j.dirs[d]--; j.dirs[d] <= 0 {
			delete(j.dirs, d)
		}
	}
}

// wroteRecord is the line recording w for name.
func wroteRecord(name string, w Written) record {
	rec := record{Wrote: name}
	for _, r := range w.Ranges {
		rec.Ranges = append(rec.Ranges, [2]int64{r.Pos, r.Size})
	}
	if w.Tail {
		from := w.From
		rec.From = &from
	}
	if w.Mapped {
		rec.Mapped = &w.Mapped
	}
	return rec
}

// load replays the file into memory. A line that does not decode (a
// write cut short by a full disk) is skipped.
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
			var w Written
			for _, r := range rec.Ranges {
				w.Ranges.Insert(ranges.Range{Pos: r[0], Size: r[1]})
			}
			if rec.From != nil {
				w.Tail, w.From = true, *rec.From
			}
			if old, ok := j.written[rec.Wrote]; ok {
				w = old.Merge(w)
			}
			if rec.Mapped != nil {
				w.Mapped = *rec.Mapped
			}
			j.set(rec.Wrote, w)
		case rec.Dropped != "":
			j.drop(rec.Dropped)
		case rec.Renaming != nil:
			j.renaming[*rec.Renaming] = true
		case rec.RenameDone != nil:
			delete(j.renaming, *rec.RenameDone)
		case rec.Detached != "":
			j.detached[rec.Detached]++
		case rec.Reattached != "":
			j.undetach(rec.Reattached)
		}
	}
	return nil
}

// compact replaces the file by one holding the live records only and
// opens it for appending. Call with mu held (or before sharing j).
func (j *Journal) compact() error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for name, w := range j.written {
		if err := enc.Encode(wroteRecord(name, w)); err != nil {
			return err
		}
	}
	for pair := range j.renaming {
		if err := enc.Encode(record{Renaming: &pair}); err != nil {
			return err
		}
	}
	detaches := 0
	for name, n := range j.detached {
		for range n {
			if err := enc.Encode(record{Detached: name}); err != nil {
				return err
			}
		}
		detaches += n
	}
	if err := j.writeAtomic(j.path, buf.Bytes()); err != nil {
		return err
	}
	f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	if j.f != nil {
		_ = j.f.Close()
	}
	j.f, j.lines, j.broken = f, len(j.written)+len(j.renaming)+detaches, false
	return nil
}

// append writes rec as one line with one write(2). After a failed append
// (which may have left part of a line) the next starts with a newline, so
// the part stays a line of its own that load skips. Call with mu held.
func (j *Journal) append(rec record) error {
	line, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if j.broken {
		line = append([]byte("\n"), line...)
	}
	if _, err := j.f.Write(append(line, '\n')); err != nil {
		j.broken = true
		return fmt.Errorf("write journal: %w", err)
	}
	j.broken = false
	j.lines++
	return nil
}

// writeAtomic replaces p by data: a reader or a kill sees the old file or
// the new one, never a part. The temporary file is made in the cache
// directory itself (the same filesystem), never inside rclone's trees,
// where its name could be a file of the volume's. It is synced before the
// rename: the cache's image is mounted with noauto_da_alloc (package
// diskimage), so ext4 no longer writes a file renamed over another first,
// and a power loss right after a compaction must not leave the journal
// empty. Compactions, repairs and fills are rare, the sync cheap there.
func (j *Journal) writeAtomic(p string, data []byte) error {
	f, err := os.CreateTemp(j.root, ".journal-tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), p)
	}
	if err != nil {
		_ = os.Remove(f.Name())
	}
	return err
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
