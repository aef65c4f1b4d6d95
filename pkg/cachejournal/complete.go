package cachejournal

import (
	"context"
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
// (the FUSE server now fetches first) and killed before the close fetched
// the rest. f is the Fs the VFS will serve. Contract:
//   - A missing range is filled below the smaller of the file's size and
//     its object's size (as rclone's own fetch), from the object the
//     bucket holds now; past the object's end the data file's zeros are
//     listed as present (the file grew past its object).
//   - A file whose object is not in the bucket, or whose data file or
//     metadata cannot be read or written, is left to rclone and reported
//     with Failed (rclone uploads what the data file holds).
//   - When the store does not answer for a file that needs it, Complete
//     stops and returns an error wrapping ErrStoreNeeded: serving now
//     could upload zeros over the bucket's bytes. Files filled before stay
//     filled.
//
// It must run while no VFS uses the cache, after Repair (which restores the
// ranges the application wrote, so only true gaps are filled).
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
		info, err := j.cache.Info(name)
		if err != nil || !info.Dirty {
			return nil // rclone drops what does not decode; clean files are not uploaded
		}
		missing := Missing(info.Rs, info.Size)
		if len(missing) == 0 {
			return nil
		}
		o, err := f.NewObject(ctx, name)
		if errors.Is(err, rfs.ErrorObjectNotFound) {
			out = append(out, Repaired{Name: name, Action: "left to rclone: lacks bytes and its object is not in the bucket", Failed: true})
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

// fill writes o's bytes of the missing ranges into name's data file and
// then lists them in name's metadata (info); it returns the bytes written.
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
		if !in.IsEmpty() {
			n, err := copyRange(ctx, df, o, in)
			filled += n
			if err != nil {
				return filled, err
			}
		}
		// Past the object's end the data file's zeros are the file's
		// bytes (rclone fetches nothing there either): present too.
		info.Rs.Insert(r)
	}
	if err := df.Sync(); err != nil { // before the metadata says the bytes are there
		return filled, err
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
