package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	rfs "github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/accounting"
	"github.com/rclone/rclone/fs/filter"
	"github.com/rclone/rclone/fs/operations"
	rsync "github.com/rclone/rclone/fs/sync"

	"github.com/bucket-csi/bucket-csi/pkg/bucket"
	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/remotefs"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// UploadResult counts what one upload sent.
type UploadResult struct {
	Files int64
	Bytes int64
}

// Upload creates or reuses the bucket name in kind (marked as created by
// the CLI with command) and copies paths into it: a single directory's
// contents go to the bucket root, several paths each go under their base
// name (uploadDirs). Files already in the bucket with the same size and
// checksum are not sent again, so a repeat or an interrupted run sends
// only what is missing or changed. Symlinks inside directories are not
// followed (a path given that is one is: copyPath); nothing in the bucket
// is deleted, and the driver's own directory is never written.
func (e *Env) Upload(ctx context.Context, name, kind string, paths []string, command string) (UploadResult, error) {
	if kind == "" {
		kind = e.DefaultStore
	}
	if err := volume.ValidateBucket(e.Kinds, kind, name); err != nil {
		return UploadResult{}, fmt.Errorf("--name: %w", err)
	}
	if len(paths) == 0 {
		return UploadResult{}, errors.New("name at least one local PATH to upload")
	}
	dirs, err := uploadDirs(paths)
	if err != nil {
		return UploadResult{}, err
	}
	b, err := e.Stores.Get(kind)
	if err != nil {
		return UploadResult{}, err
	}
	st, err := b.Open(e.Secrets[kind], b.DefaultLocation)
	if err != nil {
		return UploadResult{}, err
	}
	defer st.Close()
	if e.Ownership == nil {
		return UploadResult{}, errNoKey
	}
	owned, err := e.Ownership.Ensure(ctx, st, bucket.Ref{Store: kind, Location: b.DefaultLocation, Bucket: name}, bucket.Owner{CreatedBy: "cli " + command})
	if err != nil {
		return UploadResult{}, err
	}
	if !owned {
		return UploadResult{}, fmt.Errorf("%w: bucket %q exists but was not created by bucket-csi; upload refuses to write into buckets it does not own (mount it with source: instead)", fault.Precondition, name)
	}
	opts, err := b.Rclone(e.Secrets[kind], b.DefaultLocation)
	if err != nil {
		return UploadResult{}, err
	}
	private, err := os.MkdirTemp("", "bucket-csi-upload-")
	if err != nil {
		return UploadResult{}, err
	}
	defer os.RemoveAll(private)

	ctx, ci := rfs.AddConfig(accounting.WithStatsGroup(ctx, "upload-"+name))
	ci.CheckSum = true
	ci.Transfers = 8
	stats := accounting.StatsGroup(ctx, "upload-"+name)
	stop := e.progress(stats)
	defer stop()
	for i, p := range paths {
		dst := name
		if dirs[i] != "" {
			dst += "/" + dirs[i]
		}
		fdst, err := remotefs.Open(ctx, opts, "bucketcsiupload", private, dst)
		if err != nil { // of a fault kind
			return UploadResult{}, fmt.Errorf("uploading %s: %w", p, err)
		}
		pctx := ctx
		if dirs[i] == "" {
			// What goes to the bucket's root never carries a
			// directory's .bucket-csi, which would replace the
			// driver's mark.
			if pctx, err = withoutMeta(ctx); err != nil {
				return UploadResult{}, err
			}
		}
		if err := copyPath(pctx, p, fdst); err != nil {
			return UploadResult{}, fmt.Errorf("%w: uploading %s: %v", fault.Unavailable, p, err)
		}
	}
	stop()
	res := UploadResult{Files: stats.GetTransfers(), Bytes: stats.GetBytes()}
	fmt.Fprintf(e.Out, "Uploaded %d files (%d bytes) to %s bucket %s; unchanged files were not sent again.\n", res.Files, res.Bytes, strings.ToUpper(kind), name)
	fmt.Fprint(e.Out, snippet(name, kind))
	return res, nil
}

// uploadDirs says where in the bucket each of paths goes: the directory
// (relative to the bucket's root, "" for the root) that receives a
// file, or a directory's contents. One directory's contents go to the
// root; a file goes to the root under its base name; of several paths,
// a directory goes under its base name (of its absolute path, so "." is
// the working directory's name; a trailing "/" changes nothing). Paths
// that do not exist, the file system's root among several, a name that
// is the driver's own directory (.bucket-csi) and two paths that would
// land on the same name are refused (fault.Invalid) before anything is
// sent. A path that is a symlink is followed (copyPath).
func uploadDirs(paths []string) ([]string, error) {
	dirs := make([]string, len(paths))
	seen := map[string]string{}
	for i, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", fault.Invalid, err)
		}
		if len(paths) == 1 && info.IsDir() {
			break
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", fault.Invalid, err)
		}
		base := filepath.Base(abs)
		if base == string(filepath.Separator) {
			return nil, fmt.Errorf("%w: %s has no name to upload it under beside other paths; upload it alone", fault.Invalid, p)
		}
		if bucket.IsMeta(base) {
			return nil, fmt.Errorf("%w: %s would be uploaded as %s, the driver's own directory in the bucket; rename it", fault.Invalid, p, bucket.MetaDir)
		}
		if other, ok := seen[base]; ok {
			return nil, fmt.Errorf("%w: %s and %s would both be uploaded as %q; upload them separately or rename one", fault.Invalid, other, p, base)
		}
		seen[base] = p
		if info.IsDir() {
			dirs[i] = base
		}
	}
	return dirs, nil
}

// withoutMeta returns ctx with an rclone filter that leaves out the
// driver's own directory at the top of what is copied.
func withoutMeta(ctx context.Context) (context.Context, error) {
	fi, err := filter.NewFilter(nil)
	if err == nil {
		err = fi.Add(false, "/"+bucket.MetaDir+"/**")
	}
	if err != nil {
		return nil, err
	}
	return filter.ReplaceConfig(ctx, fi), nil
}

// copyPath copies a local file or directory into fdst. A file is copied
// under src's base name, from what src names when it is a symlink (as
// cp does with a path it is given); symlinks inside a directory are not
// followed.
func copyPath(ctx context.Context, src string, fdst rfs.Fs) error {
	info, err := os.Stat(src)
	if err != nil {
		return err
	}
	if !info.IsDir() {
		target, err := filepath.EvalSymlinks(src)
		if err != nil {
			return err
		}
		fsrc, err := rfs.NewFs(ctx, filepath.Dir(target))
		if err != nil {
			return err
		}
		return operations.CopyFile(ctx, fdst, fsrc, filepath.Base(src), filepath.Base(target))
	}
	fsrc, err := rfs.NewFs(ctx, src)
	if err != nil {
		return err
	}
	return rsync.CopyDir(ctx, fdst, fsrc, false)
}

// progress prints the upload's progress until the returned func is called:
// a live line on a terminal, a plain line every 5 seconds otherwise.
func (e *Env) progress(stats *accounting.StatsInfo) func() {
	done := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	every := 5 * time.Second
	if e.Terminal {
		every = 500 * time.Millisecond
	}
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				if e.Terminal {
					fmt.Fprintln(e.Err)
				}
				return
			case <-t.C:
				secs := time.Since(start).Seconds()
				line := fmt.Sprintf("%d files, %d bytes, %.1f MB/s", stats.GetTransfers(), stats.GetBytes(), float64(stats.GetBytes())/secs/1e6)
				if e.Terminal {
					fmt.Fprintf(e.Err, "\r%-60s", line)
				} else {
					fmt.Fprintln(e.Err, line)
				}
			}
		}
	}()
	var once bool
	return func() {
		if !once {
			once = true
			close(done)
			<-finished
		}
	}
}

// snippet is the StorageClass and PersistentVolume that use the bucket.
func snippet(name, kind string) string {
	return fmt.Sprintf(`
# Use it from Kubernetes, either with a StorageClass (every PVC sees the bucket):
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: %[1]s
provisioner: %[3]s
parameters:
  name: %[1]s
  store: %[2]s
  mode: MOUNT          # or COPY, MOUNT_CACHED
---
# or with a static PersistentVolume:
apiVersion: v1
kind: PersistentVolume
metadata:
  name: %[1]s
spec:
  capacity: {storage: 1Ti}
  accessModes: [ReadWriteMany]
  csi:
    driver: %[3]s
    volumeHandle: %[1]s
    volumeAttributes: {name: %[1]s, store: %[2]s, mode: MOUNT}
`, name, kind, volume.DriverName)
}
