package cachejournal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	rfs "github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/lib/ranges"
	"github.com/rclone/rclone/vfs/vfscache"
)

// ErrStoreNeeded is the error Complete returns when a file waiting for
// upload lacks bytes only the bucket has and the store does not give them.
var ErrStoreNeeded = errors.New("a file waiting for upload lacks bytes only the bucket has")

// Complete puts into the cache, before a VFS opens it, the bucket's bytes
// that every file waiting for upload lacks (dirty, with ranges its
// metadata does not list as present), and lists them as present.
//
// Why: a starting VFS queues every dirty cached file for upload, and it
// fetches the bytes such a file lacks first only if it finds the file's
// object at that moment; if the store does not answer, it queues the file
// as it is (rclone v1.76.0: vfscache item.reload ignores NewObject's error,
// and _actualClose fetches nothing without an object), so the upload puts
// zeros where the bucket's bytes were. Filled here, the file needs nothing
// from the store but its upload, whenever the store answers again.
//
// Such files are left by servers that changed a file before fetching it
// (the FUSE server now fetches first) and were killed before the close
// fetched the rest, and by metadata Repair rewrote after a kill tore it
// (it lists the written ranges only). f is the Fs the VFS will serve.
// Contract:
//   - The file's size is its data file's (rclone takes it from there at
//     the reload). A range is missing when neither the metadata nor the
//     journal's record of the file (should Repair have failed on it) has
//     it; missing ranges are filled below the smaller of that size and the
//     object's size (as rclone's own fetch), from the object the bucket
//     holds now; past the object's end the data file's zeros are listed
//     as present (the file grew past its object). The data file never
//     grows.
//   - Progress is kept: the metadata is rewritten after every fillChunk
//     bytes filled (the data synced first), so a start cut short by its
//     deadline goes on where it stopped.
//   - A file whose object is not in the bucket (or is not a file any
//     more), or whose data file or metadata cannot be read or written, is
//     left to rclone and reported with Failed (rclone uploads what the
//     data file holds).
//   - When the store does not give what a file needs, Complete stops and
//     returns an error wrapping ErrStoreNeeded: serving now could upload
//     zeros over the bucket's bytes.
//
// It must run while no VFS uses the cache, after Repair.
func (j *Journal) Complete(ctx context.Context, f rfs.Fs) ([]Repaired, error) {
	var out []Repaired
	err := filepath.WalkDir(j.cache.Meta, func(p string, d fs.DirEntry, err error) error {
		if gone(err) {
			return nil
		} else if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(j.cache.Meta, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel) // as vfscache's walk names items
		info, missing, err := j.lacks(name, p)
		if err != nil {
			out = append(out, Repaired{Name: name, Action: "left to rclone: " + err.Error(), Failed: true})
			return nil
		}
		if len(missing) == 0 {
			return nil
		}
		o, err := f.NewObject(ctx, name)
		if errors.Is(err, rfs.ErrorObjectNotFound) || errors.Is(err, rfs.ErrorIsDir) || errors.Is(err, rfs.ErrorNotAFile) {
			out = append(out, Repaired{Name: name, Action: "left to rclone: lacks bytes and its object is not in the bucket: " + err.Error(), Failed: true})
			return nil
		} else if err != nil {
			return fmt.Errorf("%w: %s: looking it up: %v", ErrStoreNeeded, name, err)
		}
		filled, err := j.fill(ctx, name, info, missing, o)
		switch {
		case errors.Is(err, ErrStoreNeeded):
			return err
		case err != nil:
			out = append(out, Repaired{Name: name, Action: "left to rclone: " + err.Error(), Failed: true})
		default:
			out = append(out, Repaired{Name: name, Action: fmt.Sprintf("%d bytes it lacked fetched from the bucket before its upload", filled)})
		}
		return nil
	})
	return out, err
}

// lacks reads name's metadata (at p) and returns it, with its Size set to
// the data file's size and the journal's ranges of the file added, and the
// ranges of a dirty file that neither has. A clean file lacks nothing.
func (j *Journal) lacks(name, p string) (vfscache.Info, []ranges.Range, error) {
	var info vfscache.Info
	data, err := os.ReadFile(p)
	if err != nil {
		return info, nil, nil // unreadable here, unreadable to rclone: it drops the file
	}
	if err := json.Unmarshal(data, &info); err != nil || !info.Dirty {
		return info, nil, nil
	}
	fi, err := os.Stat(j.cache.DataPath(name))
	if err != nil {
		return info, nil, err
	}
	info.Size = fi.Size()
	present := append(ranges.Ranges(nil), info.Rs...)
	j.mu.Lock()
	w, ok := j.written[name]
	j.mu.Unlock()
	if ok {
		for _, r := range w.Ranges {
			present.Insert(r)
		}
		if w.Tail && w.From < info.Size {
			present.Insert(ranges.Range{Pos: w.From, Size: info.Size - w.From})
		}
	}
	info.Rs = present // what Repair failed to save, if it did: never fetched over
	return info, Missing(present, info.Size), nil
}

// fillChunk is how many bytes fill copies between two saves of the
// metadata.
const fillChunk = 64 << 20

// fill writes o's bytes of the missing ranges into name's data file and
// lists them in name's metadata (info), saving it after every fillChunk
// bytes; it returns the bytes written.
func (j *Journal) fill(ctx context.Context, name string, info vfscache.Info, missing []ranges.Range, o rfs.Object) (int64, error) {
	df, err := os.OpenFile(j.cache.DataPath(name), os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	defer df.Close()
	var filled int64
	for _, r := range missing {
		in := r
		in.Clip(o.Size())
		for at := in.Pos; at < in.End(); {
			part := ranges.Range{Pos: at, Size: min(fillChunk, in.End()-at)}
			n, err := copyRange(ctx, df, o, part)
			filled += n
			if err != nil {
				return filled, err
			}
			if err := df.Sync(); err != nil { // before the metadata says the bytes are there
				return filled, err
			}
			info.Rs.Insert(part)
			if err := j.writeMeta(name, info); err != nil {
				return filled, err
			}
			at = part.End()
		}
		// Past the object's end the data file's zeros are the file's
		// bytes (rclone fetches nothing there either): present too.
		info.Rs.Insert(r)
	}
	return filled, j.writeMeta(name, info)
}

// copyRange copies o's bytes of r into df at r's offset. A failure to
// read them wraps ErrStoreNeeded.
func copyRange(ctx context.Context, df *os.File, o rfs.Object, r ranges.Range) (int64, error) {
	rc, err := o.Open(ctx, &rfs.RangeOption{Start: r.Pos, End: r.End() - 1})
	if err != nil {
		return 0, fmt.Errorf("%w: %s: reading bytes %d..%d: %v", ErrStoreNeeded, o.Remote(), r.Pos, r.End(), err)
	}
	defer rc.Close()
	n, err := io.Copy(io.NewOffsetWriter(df, r.Pos), io.LimitReader(rc, r.Size))
	var we *os.PathError
	switch {
	case errors.As(err, &we):
		return n, err // the data file's write failed
	case err != nil:
		return n, fmt.Errorf("%w: %s: reading bytes %d..%d: %v", ErrStoreNeeded, o.Remote(), r.Pos, r.End(), err)
	case n < r.Size:
		return n, fmt.Errorf("%w: %s: the bucket gave %d of bytes %d..%d", ErrStoreNeeded, o.Remote(), n, r.Pos, r.End())
	}
	return n, nil
}
