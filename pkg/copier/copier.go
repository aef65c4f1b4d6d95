// Package copier downloads a bucket (or prefix) to a local directory for
// COPY volumes: many objects at once, large objects in parallel ranges,
// through rclone's backends so every store works the same way.
//
// Contract: Copy makes dest hold exactly the plan's files (files that are
// no longer in the bucket are removed), refuses up front with fault.Exhausted
// when the downloads cannot fit, never writes outside dest whatever the
// keys, and records each finished file in an append-only manifest, so a
// later or interrupted copy fetches only what changed or is missing. A key
// that cannot be a file, or whose object cannot be fetched, is left out
// and counted (Result.SkippedCount, the first few named) and the copy
// completes with every other object; it fails as a whole only when the
// bucket cannot be listed (NotFound, Denied or Unavailable), the disk is
// full (Exhausted) or the store stops answering (Unavailable). Memory is
// bounded whatever the number of objects: the listing, the manifest and
// the plan are sorted on disk, next to the manifest.
package copier

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	rfs "github.com/rclone/rclone/fs"
	"golang.org/x/sys/unix"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/plainfile"
)

// Options tune a copy. Zero values take the defaults.
type Options struct {
	// Workers is the number of objects or ranges fetched at once
	// (DefaultWorkers).
	Workers int
	// ChunkSize is the size of one ranged GET of a large object (16 MiB).
	ChunkSize int64
	// HideMetaDir leaves out the driver's own objects (bucket.IsMeta).
	HideMetaDir bool
	// Space decides once, after planning and before any download, whether
	// the copy fits (see Sizes). An error refuses the copy (fault.Exhausted
	// with the figures). Nil means FreeSpace of the files and the
	// bookkeeping together.
	Space func(ctx context.Context, dest string, s Sizes) error
	// Bookkeeping is asked before the copy's own files (bookkeeping.go)
	// grow past what it granted, for at least need and at most want bytes
	// more beside everything the volume holds already: before Space,
	// beside what the copy's directory held when the copy began; after
	// it, beside what Space granted. It returns the bytes it grants. dir
	// is the directory holding them. An error stops the copy and is
	// returned as is. Nil means FreeUpTo. Calls never overlap, nor
	// overlap Space.
	Bookkeeping func(ctx context.Context, dir string, need, want int64) (int64, error)
	// sortMemory is the bytes of listed records held in memory before
	// they are sorted into a run file (sorterRunBytes when 0).
	sortMemory int
}

// Sizes are what a copy asks room for, after planning (Options.Space).
// Total is the disk space of the finished copy's files and directories
// (those already there included), Need the space of those still to be
// made and Files their number: whole blocks, and at least one per file
// or directory, so a bucket of many tiny or empty objects, or of deep
// paths, is charged what it takes on the disk, not its bytes (see
// footprint). Bookkeeping is the disk space of the copy's own files
// while it downloads: those written so far (already on disk) and
// BookkeepingNeed, the manifest lines the downloads will add.
type Sizes struct {
	Total, Need, Files           int64
	Bookkeeping, BookkeepingNeed int64
}

// Plus returns the disk space the copy takes with its bookkeeping and
// extra bytes more (a writable volume's write space), and how much of it
// is still to be written; both saturate at math.MaxInt64 (a listing's
// absurd size must be refused, not wrap around).
func (s Sizes) Plus(extra int64) (total, need int64) {
	return addSpace(addSpace(s.Total, s.Bookkeeping), extra), addSpace(addSpace(s.Need, s.BookkeepingNeed), extra)
}

// DefaultWorkers is Options.Workers when it is not set: with a store 20 ms
// away, 64 fetched small files 1.31× as fast as 32 (each costs a round
// trip), and on loopback as fast (docs/benchmarks.md, What changed the
// figures).
const DefaultWorkers = 64

// Connections returns ctx with rclone's settings raised so that a
// filesystem opened with it keeps an idle connection for each of opt's
// workers. rclone's HTTP transport keeps at most 2 × (checkers + transfers
// + 1) idle connections per host, 26 by default: with more workers than
// that, a finished GET closes its connection and a later one opens a new
// one, a TCP (and TLS) handshake more per object against a far store.
func Connections(ctx context.Context, opt Options) context.Context {
	ctx, ci := rfs.AddConfig(ctx)
	ci.Transfers = max(ci.Transfers, (opt.withDefaults().Workers+1)/2)
	return ctx
}

// withDefaults returns opt with its zero values replaced by the defaults.
func (opt Options) withDefaults() Options {
	if opt.Workers <= 0 {
		opt.Workers = DefaultWorkers
	}
	if opt.ChunkSize <= 0 {
		opt.ChunkSize = 16 << 20
	}
	if opt.Space == nil {
		opt.Space = func(ctx context.Context, dest string, s Sizes) error {
			total, need := s.Plus(0)
			return FreeSpace(ctx, dest, total, need, s.Files)
		}
	}
	if opt.sortMemory <= 0 {
		opt.sortMemory = sorterRunBytes
	}
	if opt.Bookkeeping == nil {
		opt.Bookkeeping = FreeUpTo
	}
	return opt
}

// Progress counts a running copy; safe for concurrent reads.
type Progress struct {
	FilesTotal, FilesDone atomic.Int64
	BytesTotal, BytesDone atomic.Int64
}

// Figures is a snapshot of Progress: the files and bytes this copy has
// fetched and has to fetch (files already on disk from an earlier copy are
// in neither).
type Figures struct {
	FilesDone, FilesTotal, BytesDone, BytesTotal int64
}

// Snapshot returns the figures now.
func (p *Progress) Snapshot() Figures {
	return Figures{FilesDone: p.FilesDone.Load(), FilesTotal: p.FilesTotal.Load(), BytesDone: p.BytesDone.Load(), BytesTotal: p.BytesTotal.Load()}
}

// String summarises progress for retryable errors.
func (p *Progress) String() string {
	return fmt.Sprintf("%d of %d files, %d of %d bytes", p.FilesDone.Load(), p.FilesTotal.Load(), p.BytesDone.Load(), p.BytesTotal.Load())
}

// Result summarises a finished copy. Files and Bytes are what the copy
// holds, Downloaded and DownloadedBytes what this copy fetched; objects
// left out are counted in SkippedCount, the first few named in Skipped.
type Result struct {
	Files           int
	Bytes           int64
	Downloaded      int
	DownloadedBytes int64
	// DiskBytes and DiskNeed are the disk space of Bytes and
	// DownloadedBytes as files, with the directories they need (see
	// footprint), known after planning.
	DiskBytes, DiskNeed int64
	// ManifestBytes is the size of the manifest the copy leaves, done or
	// not (its other bookkeeping is removed).
	ManifestBytes int64
	SkippedCount  int
	Skipped       []Skip
}

// partPrefix begins the name of every download file (partPath); no key
// maps to such a name (localPath).
const partPrefix = ".bcsi-part-"

// partPath is the download file of final: in final's directory, so the
// rename into place stays on one filesystem, and named by a hash of
// final's name, so it fits NAME_MAX whatever that name's length (a
// 250-byte name plus a suffix would not) and no two files of a directory
// share one, even with names made to collide.
func partPath(final string) string {
	dir, base := filepath.Split(final)
	sum := sha256.Sum256([]byte(base))
	return dir + partPrefix + hex.EncodeToString(sum[:16])
}

// run is one Copy call.
type run struct {
	f     rfs.Fs
	dest  string
	opt   Options
	p     *Progress
	man   *manifest
	meter *meter
	skips skipList
	// objs holds up to heldObjects listed objects by path.
	objs map[string]rfs.Object
	// failedRow counts downloads in a row that failed without an answer
	// from the store; failed counts every download left out.
	failedRow   atomic.Int64
	failedFiles atomic.Int64
	failedBytes atomic.Int64
	// bufs holds the copy buffers (copyBufSize) of this run's workers
	// for reuse: one per worker at a time, dropped with the run.
	bufs sync.Pool
}

// copyBufSize is the size of the buffer each download copies through.
const copyBufSize = 256 << 10

// Copy brings dest up to date with f. See the package comment. Memory
// stays bounded whatever the number of objects: the listing, the old
// manifest and the plan are sorted on disk next to manifestPath and joined
// in path order.
func Copy(ctx context.Context, f rfs.Fs, dest, manifestPath string, opt Options, p *Progress) (Result, error) {
	opt = opt.withDefaults()
	work := manifestPath + ".work"
	if err := os.RemoveAll(work); err != nil {
		return Result{}, err
	}
	if err := os.MkdirAll(work, 0o700); err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(work)
	r := &run{f: f, dest: dest, opt: opt, p: p, objs: map[string]rfs.Object{}}
	r.meter = &meter{ctx: ctx, dir: filepath.Dir(manifestPath), ask: opt.Bookkeeping}
	r.bufs.New = func() any { b := make([]byte, copyBufSize); return &b }
	res, err := r.copy(ctx, work, manifestPath)
	res.SkippedCount, res.Skipped = r.skips.result()
	st, serr := os.Stat(manifestPath)
	switch {
	case serr == nil:
		res.ManifestBytes = st.Size()
	case err == nil || !errors.Is(serr, os.ErrNotExist):
		err = errors.Join(err, serr)
	}
	return res, err
}

func (r *run) copy(ctx context.Context, work, manifestPath string) (Result, error) {
	listed := newSorter(work, "listing", r.meter, r.opt.sortMemory)
	if err := r.list(ctx, listed); err != nil {
		return Result{}, err
	}
	old := newSorter(work, "manifest", r.meter, r.opt.sortMemory)
	if err := readManifest(manifestPath, old); err != nil {
		return Result{}, fmt.Errorf("copy manifest: %w", err)
	}
	if err := os.MkdirAll(r.dest, newDirMode); err != nil {
		return Result{}, err
	}
	man, err := newManifest(manifestPath, r.meter)
	if err != nil {
		return Result{}, fmt.Errorf("copy manifest: %w", err)
	}
	defer man.close()
	r.man = man
	planPath := filepath.Join(work, "plan")
	res, sizes, err := r.join(listed, old, man, planPath, blockSize(r.dest))
	if err == nil {
		err = man.commit()
	}
	if err != nil {
		return res, err
	}
	if err := removeExtra(r.dest, planPath); err != nil {
		return res, err
	}
	sizes.Bookkeeping = addSpace(r.meter.settle(sizes.BookkeepingNeed), sizes.BookkeepingNeed)
	if err := r.opt.Space(ctx, r.dest, sizes); err != nil {
		return res, err
	}
	r.p.FilesTotal.Store(int64(res.Downloaded))
	r.p.BytesTotal.Store(res.DownloadedBytes)
	err = r.download(ctx, planPath)
	n, b := r.failedFiles.Load(), r.failedBytes.Load()
	res.Files -= int(n)
	res.Bytes -= b
	res.Downloaded -= int(n)
	res.DownloadedBytes -= b
	return res, err
}

// FreeUpTo returns what of want bytes, and at least need, the disk
// holding dir has free; it refuses as FreeSpace does when need is not.
func FreeUpTo(_ context.Context, dir string, need, want int64) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if need > free {
		return 0, noRoom(need, free, dir)
	}
	return max(need, min(want, free)), nil
}

// noRoom is the refusal of a copy that needs more bytes than are free at
// dir.
func noRoom(need, free int64, dir string) error {
	return fmt.Errorf("%w: the copy needs %d bytes but only %d bytes are free at %s; COPY needs a disk larger than the data (use MOUNT or MOUNT_CACHED)", fault.Exhausted, need, free, dir)
}

// FreeSpace is the default Options.Space: it refuses a copy whose
// downloads cannot fit in the free space, or the free inodes, of the disk
// holding dest.
func FreeSpace(_ context.Context, dest string, _, need, files int64) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dest, &st); err != nil {
		return err
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if need > free {
		return noRoom(need, free, dest)
	}
	// A filesystem without a fixed inode count (btrfs) reports none, or
	// more free than an int64 holds.
	if st.Files > 0 && st.Ffree <= math.MaxInt64 && files > int64(st.Ffree) {
		return fmt.Errorf("%w: the copy needs %d files but only %d inodes are free at %s; COPY needs a disk with room for every object as a file (use MOUNT or MOUNT_CACHED)", fault.Exhausted, files, st.Ffree, dest)
	}
	return nil
}

// footprint is the disk space a file of n bytes is charged: whole blocks
// of the destination's filesystem, and at least one (an empty file still
// costs an inode, a directory entry and its share of the metadata). It
// saturates at math.MaxInt64, as addSpace does: a listing's absurd size
// must be refused, not wrap around.
func footprint(n, block int64) int64 {
	blocks := max(n, 0) / block
	if n%block != 0 || n <= 0 {
		blocks++
	}
	if blocks > math.MaxInt64/block {
		return math.MaxInt64
	}
	return blocks * block
}

// addSpace is a+b, saturating at math.MaxInt64 (both are not negative).
func addSpace(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// blockSize is the allocation unit of the filesystem holding dir: its
// fragment size, which is its block size on ext4 and xfs, held to 512
// bytes .. 64 KiB (a network or ZFS filesystem reports its I/O size, up to
// megabytes, and would charge small files far more than they take); 4096
// when it cannot be read.
func blockSize(dir string) int64 {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 4096
	}
	b := st.Frsize
	if b <= 0 {
		b = st.Bsize
	}
	return min(max(b, 512), 64<<10)
}

// download fetches the plan's files to download with opt.Workers parallel
// GETs, reading the plan as it goes.
func (r *run) download(ctx context.Context, planPath string) error {
	rr, err := openRecords(planPath)
	if err != nil {
		return err
	}
	defer rr.close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, ctx := newPool(ctx, r.opt.Workers)
	// Setup errors stop scheduling but still wait for running fetches, so
	// nothing writes into dest after Copy returns.
	setupErr := r.schedule(ctx, g, rr)
	if setupErr != nil {
		cancel()
	}
	if err := g.Wait(); err != nil && (setupErr == nil || ctxErr(setupErr) != nil) {
		return err // a worker's error, which stopped the scheduling
	}
	return setupErr
}

// schedule queues the fetches of the plan's files to download on g.
func (r *run) schedule(ctx context.Context, g *pool, rr *recordReader) error {
	lastDir := ""
	for ctx.Err() == nil {
		var rec record
		if err := rr.next(&rec); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if !rec.Todo {
			continue
		}
		fl := &file{rec: rec, final: filepath.Join(r.dest, rec.Path), obj: r.objs[rec.Path]}
		if dir := filepath.Dir(fl.final); dir != lastDir {
			if err := os.MkdirAll(dir, newDirMode); err != nil {
				if err := r.failed(fl, err); err != nil {
					return err
				}
				continue
			}
			lastDir = dir
		}
		chunks := max(1, (rec.Size+r.opt.ChunkSize-1)/r.opt.ChunkSize)
		if chunks == 1 {
			// Created by the worker, so file creation (the bound on a
			// node disk for small objects) runs in parallel too.
			g.Go(func() error {
				err := r.fetchWhole(ctx, fl)
				if err != nil {
					return r.failed(fl, err)
				}
				r.succeeded()
				return nil
			})
			continue
		}
		out, err := createPart(fl.final)
		if err == nil {
			err = out.Truncate(rec.Size)
			if err != nil {
				out.Close()
			}
		}
		if err != nil {
			if err := r.failed(fl, err); err != nil {
				return err
			}
			continue
		}
		fl.out = out
		fl.left.Store(chunks)
		for c := int64(0); c < chunks; c++ {
			off := c * r.opt.ChunkSize
			n := min(r.opt.ChunkSize, rec.Size-off)
			g.Go(func() error { return r.fetchChunk(ctx, fl, off, n) })
		}
	}
	return ctx.Err()
}

// file is one download in flight.
type file struct {
	rec   record
	final string
	// obj is the listed object, or nil: looked up once by the first GET.
	obj    rfs.Object
	once   sync.Once
	objErr error
	// For ranged downloads: the part file, chunks left, first failure.
	out  *os.File
	left atomic.Int64
	mu   sync.Mutex
	err  error
}

// object returns the object to read fl from.
func (r *run) object(ctx context.Context, fl *file) (rfs.Object, error) {
	fl.once.Do(func() {
		if fl.obj != nil {
			return
		}
		o, err := r.f.NewObject(ctx, fl.rec.Path)
		switch {
		case err != nil:
			fl.objErr = err
		case o.Size() != fl.rec.Size:
			fl.objErr = fmt.Errorf("%w: changed since it was listed", rfs.ErrorObjectNotFound)
		default:
			fl.obj = o
		}
	})
	return fl.obj, fl.objErr
}

// fetchChunk downloads one range of a ranged download; the last range to
// finish completes (or fails) the file.
func (r *run) fetchChunk(ctx context.Context, fl *file, off, n int64) error {
	fl.mu.Lock()
	failed := fl.err != nil
	fl.mu.Unlock()
	if !failed {
		if err := r.fetchRange(ctx, fl, fl.out, off, n, true); err != nil {
			fl.mu.Lock()
			if fl.err == nil {
				fl.err = err
			}
			fl.mu.Unlock()
		}
	}
	if fl.left.Add(-1) != 0 {
		return nil
	}
	fl.mu.Lock()
	err := fl.err
	fl.mu.Unlock()
	var mtime int64
	if err == nil {
		mtime, err = closePart(fl.out)
	} else {
		fl.out.Close()
	}
	if err == nil {
		err = r.unchanged(ctx, fl)
	}
	if err == nil {
		err = r.finish(fl, mtime)
	}
	if err != nil {
		return r.failed(fl, err)
	}
	r.succeeded()
	return nil
}

// unchanged checks, once every range of a ranged download has arrived,
// that the object is still the one listed: each range was its own GET, so
// an object replaced meanwhile, even by one of the same size, would leave
// a file made of two versions. A changed object is left out as one
// changed before its first GET is (see object), for the next copy to
// fetch whole.
func (r *run) unchanged(ctx context.Context, fl *file) error {
	o, err := r.f.NewObject(ctx, fl.rec.Path)
	if err != nil {
		return err
	}
	if o.Size() != fl.rec.Size || rfs.Fingerprint(ctx, o, true) != fl.rec.FP {
		return errChanged
	}
	return nil
}

// errChanged is unchanged's answer for an object replaced during its
// download.
var errChanged = errors.New("changed in the bucket while its ranges were downloaded; the next copy fetches it whole")

// closePart closes a complete part file and returns its modification
// time, which the rename into place keeps (an fstat: cheaper than a
// lookup of the name after it).
func closePart(out *os.File) (mtime int64, err error) {
	st, err := out.Stat()
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	return st.ModTime().UnixNano(), nil
}

// finish renames a complete download, closed by closePart at mtime, into
// place and records it. rename(2) replaces a file or link at the final
// name and refuses a directory (EISDIR, a skip), without os.Rename's
// lookup of the name first; an interrupted rename is tried again, as
// os.Rename does.
func (r *run) finish(fl *file, mtime int64) error {
	part := partPath(fl.final)
	err := unix.Rename(part, fl.final)
	for err == unix.EINTR {
		err = unix.Rename(part, fl.final)
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: part, New: fl.final, Err: err}
	}
	r.p.FilesDone.Add(1)
	return r.man.add(entry{Path: fl.rec.Path, Fingerprint: fl.rec.FP, Size: fl.rec.Size, MTimeNanos: mtime})
}

// succeeded notes a finished download.
func (r *run) succeeded() { r.failedRow.Store(0) }

// failed decides what a failed download means: nil when the file is left
// out (and counted) and the copy goes on, an error that ends the copy
// when the disk is full, the store stopped answering or the copy was
// cancelled.
func (r *run) failed(fl *file, err error) error {
	_ = os.Remove(partPath(fl.final))
	switch {
	case ctxErr(err) != nil:
		return ctxErr(err)
	case errors.Is(err, fault.Exhausted):
		return err // Options.Bookkeeping refused the manifest line
	case localFull(err):
		return fmt.Errorf("%w: the node disk filled up during the copy: %v", fault.Exhausted, err)
	case errors.Is(err, errChanged):
		r.skip(fl, errChanged.Error())
		return nil
	case localSkip(err):
		r.skip(fl, "cannot be a file on the node: "+errText(err))
		return nil
	case storeAnswered(err):
		r.skip(fl, "the store refused the download: "+errText(err))
		return nil
	}
	var pe *fs.PathError
	var le *os.LinkError
	if errors.As(err, &pe) || errors.As(err, &le) {
		return err // the node's disk failed, not the store
	}
	if n := r.failedRow.Add(1); n >= outageAfter {
		return fmt.Errorf("%w: %d downloads in a row failed, the store is not answering (last: %q: %v)", fault.Unavailable, n, fl.rec.Path, err)
	}
	r.skip(fl, "download failed: "+errText(err))
	return nil
}

func (r *run) skip(fl *file, why string) {
	r.skips.add(fl.rec.Path, why)
	r.failedFiles.Add(1)
	r.failedBytes.Add(fl.rec.Size)
}

// errText shortens an error for a skip reason.
func errText(err error) string {
	s := err.Error()
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// ctxErr returns the context error err carries, if any.
func ctxErr(err error) error {
	for _, e := range []error{context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, e) {
			return e
		}
	}
	return nil
}

// newFileMode and newDirMode are the modes of the files and directories a
// copy makes: its owner's alone until the stage presents the copy with the
// volume's owner and modes (pkg/stage, presentCopy), so a copy that runs
// under readers of an earlier presentation of it shows them nothing new
// before then.
const (
	newFileMode = 0o600
	newDirMode  = 0o700
)

// createPart creates the download file of final as a new regular file.
// It never opens what is already at the part's name. Nothing should be
// there: removeExtra clears the copy's leftovers before the downloads, and
// a pod's writes go to its write space, not into the copy (pkg/stage). But
// opening a FIFO for writing would block until a reader came, and a
// symlink could lead outside the copy, so whatever is there is removed
// and the create tried once more; what cannot be removed (a directory
// with files) leaves the create's EEXIST, a skip (localSkip). The rename into place then
// replaces whatever is at final, link or file. One per object: opened
// without the poller's system calls (plainfile).
func createPart(final string) (*os.File, error) {
	part := partPath(final)
	const flags = os.O_CREATE | os.O_EXCL | os.O_WRONLY | unix.O_NOFOLLOW
	f, err := plainfile.Open(part, flags, newFileMode)
	if errors.Is(err, fs.ErrExist) && os.Remove(part) == nil {
		f, err = plainfile.Open(part, flags, newFileMode)
	}
	return f, err
}

// fetchWhole downloads a one-range object and renames it into place.
func (r *run) fetchWhole(ctx context.Context, fl *file) error {
	out, err := createPart(fl.final)
	if err != nil {
		return err
	}
	if err := r.fetchRange(ctx, fl, out, 0, fl.rec.Size, false); err != nil {
		out.Close()
		return err
	}
	mtime, err := closePart(out)
	if err != nil {
		return err
	}
	return r.finish(fl, mtime)
}

// fetchRange copies n bytes of fl at off into out, trying again (from the
// start of the range) while the store does not answer.
func (r *run) fetchRange(ctx context.Context, fl *file, out *os.File, off, n int64, ranged bool) error {
	if n == 0 {
		return nil // an empty file needs no GET
	}
	var err error
	for attempt := 0; attempt < fetchAttempts; attempt++ {
		if attempt > 0 {
			if perr := pause(ctx, fetchBackoff<<(attempt-1)); perr != nil {
				return perr
			}
		}
		err = r.getRange(ctx, fl, out, off, n, ranged)
		if err == nil || ctxErr(err) != nil || storeAnswered(err) || localFull(err) || localSkip(err) {
			return err
		}
	}
	return err
}

// getRange is one GET of fetchRange.
func (r *run) getRange(ctx context.Context, fl *file, out *os.File, off, n int64, ranged bool) error {
	o, err := r.object(ctx, fl)
	if err != nil {
		return err
	}
	var opts []rfs.OpenOption
	if ranged {
		opts = append(opts, &rfs.RangeOption{Start: off, End: off + n - 1})
	}
	rc, err := o.Open(ctx, opts...)
	if err != nil {
		return err
	}
	defer rc.Close()
	buf := r.bufs.Get().(*[]byte)
	defer r.bufs.Put(buf)
	w := io.NewOffsetWriter(out, off)
	got, err := io.CopyBuffer(w, &countingReader{r: io.LimitReader(rc, n), p: r.p}, *buf)
	if err != nil {
		return err
	}
	if got != n {
		return fmt.Errorf("got %d of %d bytes at offset %d", got, n, off)
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
