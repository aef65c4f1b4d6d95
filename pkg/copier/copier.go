// Package copier downloads a bucket (or prefix) to a local directory for
// COPY volumes: many objects at once, large objects in parallel ranges,
// through rclone's backends so every store works the same way.
//
// Contract: Copy makes dest hold exactly the plan's files (files that are
// no longer in the bucket are removed), refuses up front with fault.Exhausted
// when the downloads cannot fit, never writes outside dest whatever the
// keys, and records each finished file in an append-only manifest, so a
// later or interrupted copy fetches only what changed or is missing.
package copier

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	rfs "github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/walk"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
)

// Options tune a copy. Zero values take the defaults.
type Options struct {
	// Workers is the number of objects or ranges fetched at once (32).
	Workers int
	// ChunkSize is the size of one ranged GET of a large object (16 MiB).
	ChunkSize int64
	// HideMetaDir leaves out the driver's own objects (.bucket-csi/).
	HideMetaDir bool
	// Reserve, if set, is called once after planning and before any
	// download with the bytes the finished copy holds (files already
	// there included); an error refuses the copy (node disk budget).
	Reserve func(total int64) error
}

// File is one object planned for the copy.
type File struct {
	Key  string
	Path string // relative to dest
	Size int64
	obj  rfs.Object
	fp   string
}

// Progress counts a running copy; safe for concurrent reads.
type Progress struct {
	FilesTotal, FilesDone atomic.Int64
	BytesTotal, BytesDone atomic.Int64
}

// String summarises progress for retryable errors.
func (p *Progress) String() string {
	return fmt.Sprintf("%d of %d files, %d of %d bytes", p.FilesDone.Load(), p.FilesTotal.Load(), p.BytesDone.Load(), p.BytesTotal.Load())
}

// Result summarises a finished copy.
type Result struct {
	Files           int
	Bytes           int64
	Downloaded      int
	DownloadedBytes int64
	Skipped         []Skip
}

const partSuffix = ".bcsi-part"

// Copy brings dest up to date with f. See the package comment.
func Copy(ctx context.Context, f rfs.Fs, dest, manifestPath string, opt Options, p *Progress) (Result, error) {
	if opt.Workers <= 0 {
		opt.Workers = 32
	}
	if opt.ChunkSize <= 0 {
		opt.ChunkSize = 16 << 20
	}
	files, skipped, err := plan(ctx, f, opt.HideMetaDir)
	if err != nil {
		return Result{}, err
	}
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return Result{}, err
	}
	man, err := openManifest(manifestPath)
	if err != nil {
		return Result{}, fmt.Errorf("copy manifest: %w", err)
	}
	defer man.close()
	res := Result{Files: len(files), Skipped: skipped}
	var todo []File
	keep := make(map[string]bool, len(files))
	for _, fl := range files {
		keep[fl.Path] = true
		res.Bytes += fl.Size
		if !unchanged(dest, fl, man) {
			todo = append(todo, fl)
			res.DownloadedBytes += fl.Size
		}
	}
	res.Downloaded = len(todo)
	if err := removeExtra(dest, keep); err != nil {
		return res, err
	}
	if err := checkSpace(dest, res.DownloadedBytes); err != nil {
		return res, err
	}
	if opt.Reserve != nil {
		if err := opt.Reserve(res.Bytes); err != nil {
			return res, err
		}
	}
	p.FilesTotal.Store(int64(len(todo)))
	p.BytesTotal.Store(res.DownloadedBytes)
	return res, download(ctx, dest, todo, man, opt, p)
}

// plan lists every object and maps it to a local path.
func plan(ctx context.Context, f rfs.Fs, hideMeta bool) ([]File, []Skip, error) {
	var files []File
	var skipped []Skip
	err := walk.ListR(ctx, f, "", true, -1, walk.ListObjects, func(entries rfs.DirEntries) error {
		for _, e := range entries {
			o, ok := e.(rfs.Object)
			if !ok {
				continue
			}
			key := o.Remote()
			if hideMeta && (strings.HasPrefix(key, ".bucket-csi/")) {
				continue
			}
			if strings.HasSuffix(key, "/") && o.Size() == 0 {
				continue // a directory marker
			}
			p, why := localPath(key)
			if why != "" {
				skipped = append(skipped, Skip{Key: key, Reason: why})
				continue
			}
			files = append(files, File{Key: key, Path: p, Size: o.Size(), obj: o, fp: rfs.Fingerprint(ctx, o, true)})
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("%w: listing the bucket: %v", fault.Unavailable, err)
	}
	files, conflicts := resolveConflicts(files)
	return files, append(skipped, conflicts...), nil
}

// unchanged reports whether the local copy of fl is the finished download
// of the same object and was not modified since.
func unchanged(dest string, fl File, man *manifest) bool {
	e, ok := man.get(fl.Path)
	if !ok || e.Fingerprint != fl.fp || e.Size != fl.Size {
		return false
	}
	st, err := os.Lstat(filepath.Join(dest, fl.Path))
	return err == nil && st.Mode().IsRegular() && st.Size() == e.Size && st.ModTime().UnixNano() == e.MTimeNanos
}

// removeExtra deletes files under dest that are not in keep (objects gone
// from the bucket, leftovers of interrupted downloads, files a pod added).
func removeExtra(dest string, keep map[string]bool) error {
	return filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dest, p)
		if err != nil {
			return err
		}
		if !keep[filepath.ToSlash(rel)] {
			return os.Remove(p)
		}
		return nil
	})
}

// checkSpace refuses a copy that cannot fit on the disk holding dest.
func checkSpace(dest string, need int64) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dest, &st); err != nil {
		return err
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if need > free {
		return fmt.Errorf("%w: the copy needs %d bytes but only %d bytes are free at %s; COPY needs a disk larger than the data (use MOUNT or MOUNT_CACHED)", fault.Exhausted, need, free, dest)
	}
	return nil
}

// download fetches todo into dest with opt.Workers parallel GETs.
func download(ctx context.Context, dest string, todo []File, man *manifest, opt Options, p *Progress) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(opt.Workers)
	// Setup errors stop scheduling but still wait for running fetches, so
	// nothing writes into dest after Copy returns.
	setupErr := scheduleDownloads(ctx, g, dest, todo, man, opt, p)
	if setupErr != nil {
		cancel()
	}
	if err := g.Wait(); err != nil && setupErr == nil {
		return err
	}
	return setupErr
}

// scheduleDownloads queues the fetches of todo on g.
func scheduleDownloads(ctx context.Context, g *errgroup.Group, dest string, todo []File, man *manifest, opt Options, p *Progress) error {
	var dirs sync.Map
	for _, fl := range todo {
		final := filepath.Join(dest, fl.Path)
		dir := filepath.Dir(final)
		if _, ok := dirs.Load(dir); !ok {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("creating %s: %w", dir, err)
			}
			dirs.Store(dir, true)
		}
		chunks := max(1, (fl.Size+opt.ChunkSize-1)/opt.ChunkSize)
		if chunks == 1 {
			// Created by the worker, so file creation (the bound on a
			// node disk for small objects) runs in parallel too.
			g.Go(func() error { return fetchWhole(ctx, fl, final, man, p) })
			continue
		}
		out, err := createPart(final)
		if err != nil {
			return err
		}
		if err := out.Truncate(fl.Size); err != nil {
			out.Close()
			return err
		}
		left := &atomic.Int64{}
		left.Store(chunks)
		finish := func() error {
			if err := out.Close(); err != nil {
				return err
			}
			if err := os.Rename(final+partSuffix, final); err != nil {
				return err
			}
			st, err := os.Lstat(final)
			if err != nil {
				return err
			}
			p.FilesDone.Add(1)
			return man.add(entry{Path: fl.Path, Fingerprint: fl.fp, Size: fl.Size, MTimeNanos: st.ModTime().UnixNano()})
		}
		for c := int64(0); c < chunks; c++ {
			off := c * opt.ChunkSize
			n := min(opt.ChunkSize, fl.Size-off)
			g.Go(func() error {
				if err := fetchRange(ctx, fl, out, off, n, true, p); err != nil {
					out.Close()
					return err
				}
				if left.Add(-1) == 0 {
					return finish()
				}
				return nil
			})
		}
	}
	return nil
}

// createPart creates the download file of final. It never follows a
// symlink (a pod may have left one at any name in the copy): the rename
// into place then replaces whatever is at final, link or file, and writes
// nothing outside the copy.
func createPart(final string) (*os.File, error) {
	return os.OpenFile(final+partSuffix, os.O_CREATE|os.O_TRUNC|os.O_WRONLY|unix.O_NOFOLLOW, 0o644)
}

// fetchWhole downloads a one-range object and renames it into place.
func fetchWhole(ctx context.Context, fl File, final string, man *manifest, p *Progress) error {
	out, err := createPart(final)
	if err != nil {
		return err
	}
	if err := fetchRange(ctx, fl, out, 0, fl.Size, false, p); err != nil {
		out.Close()
		return err
	}
	st, err := out.Stat()
	if err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if err := os.Rename(final+partSuffix, final); err != nil {
		return err
	}
	p.FilesDone.Add(1)
	return man.add(entry{Path: fl.Path, Fingerprint: fl.fp, Size: fl.Size, MTimeNanos: st.ModTime().UnixNano()})
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// fetchRange copies n bytes of fl at off into out.
func fetchRange(ctx context.Context, fl File, out *os.File, off, n int64, ranged bool, p *Progress) error {
	if n == 0 {
		return nil // an empty file needs no GET
	}
	var opts []rfs.OpenOption
	if ranged {
		opts = append(opts, &rfs.RangeOption{Start: off, End: off + n - 1})
	}
	rc, err := fl.obj.Open(ctx, opts...)
	if err != nil {
		return fmt.Errorf("%w: downloading %q: %v", fault.Unavailable, fl.Key, err)
	}
	defer rc.Close()
	buf := bufPool.Get().(*[]byte)
	defer bufPool.Put(buf)
	w := io.NewOffsetWriter(out, off)
	got, err := io.CopyBuffer(w, &countingReader{r: io.LimitReader(rc, n), p: p}, *buf)
	if err != nil {
		return fmt.Errorf("%w: downloading %q: %v", fault.Unavailable, fl.Key, err)
	}
	if got != n {
		return fmt.Errorf("%w: downloading %q: got %d of %d bytes at offset %d", fault.Unavailable, fl.Key, got, n, off)
	}
	return nil
}

type countingReader struct {
	r io.Reader
	p *Progress
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.p.BytesDone.Add(int64(n))
	return n, err
}
