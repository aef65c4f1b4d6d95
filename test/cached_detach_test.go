package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/rclone/rclone/vfs/vfscache"

	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// TestCachedNameTakenFromAnOpenFile: a MOUNT_CACHED file a reader holds
// open while its name is unlinked and written again, or renamed onto (a
// checkpoint saved as a temporary file and renamed over the one a reader
// has open), is closed after the new file. rclone's cache item of the old
// file then saves its metadata, clean, over the new file's (the test waits
// for that). The new file is kept all the same: an fsync of it uploads it at once, and a server
// killed long before the write-back delay (30s here) loses nothing (the
// journal's Detach; pkg/cachejournal's TestDetachKeepsTheNewFile shows
// rclone alone losing it).
func TestCachedNameTakenFromAnOpenFile(t *testing.T) {
	for _, replace := range []string{"unlink", "rename"} {
		for _, then := range []string{"fsync", "kill"} {
			t.Run(replace+"/"+then, func(t *testing.T) {
				s3, drv, c, id, bucket, staging, target := cachedVolume(t, "pvc-cached-detach")
				p, old, reader := openOldFile(t, s3, bucket, target)
				if got, err := io.ReadAll(reader); err != nil || !bytes.Equal(got, old) {
					t.Fatalf("reading the old file: %v (%d bytes)", err, len(got))
				}
				want := bytes.Repeat([]byte("new "), 100_000)
				replaceFile(t, replace, p, want)
				// RELEASEs are asynchronous: the new file's own last save
				// (dirty, whole: its close, the last save before its upload
				// is queued) first, then the old file's over it.
				waitCacheMeta(t, drv, "latest.bin", "the new file saved", func(info vfscache.Info) bool {
					return info.Dirty && info.Size == int64(len(want))
				})
				if err := reader.Close(); err != nil {
					t.Fatal(err)
				}
				waitCacheMeta(t, drv, "latest.bin", "the old file saved over it", func(info vfscache.Info) bool { return !info.Dirty })
				if then == "fsync" {
					syncReadOnly(t, p)
					if got, err := s3.ReadObject(t, bucket, "latest.bin"); err != nil || !bytes.Equal(got, want) {
						t.Fatalf("after the fsync the bucket holds %d bytes (%v), want the new file's %d", len(got), err, len(want))
					}
				} else {
					killTheServer(t, drv)
				}
				if _, err := c.Node.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
					t.Fatal(err)
				}
				unstageUntilDone(t, c, id, staging, 30*time.Second, 2*time.Minute)
				if got, err := s3.ReadObject(t, bucket, "latest.bin"); err != nil || !bytes.Equal(got, want) {
					t.Fatalf("after the %s and the unstage the bucket holds %d bytes (%v), want the new file's %d", then, len(got), err, len(want))
				}
			})
		}
	}
}

// waitCacheMeta waits until rclone's cache metadata of rel in the one
// MOUNT_CACHED cache of drv decodes and satisfies ok.
func waitCacheMeta(t *testing.T, drv *testenv.Driver, rel, what string, ok func(vfscache.Info) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var info vfscache.Info
		data, err := os.ReadFile(cacheMetaPath(t, drv, rel))
		if err == nil {
			err = json.Unmarshal(data, &info)
		}
		if err == nil && ok(info) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not seen in %s's cache metadata (%v): %s", what, rel, err, data)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// openOldFile puts a 1 MiB object latest.bin into bucket and opens it
// through the volume mounted at target, unread.
func openOldFile(t *testing.T, s3 *testenv.S3, bucket, target string) (p string, old []byte, f *os.File) {
	t.Helper()
	old = bytes.Repeat([]byte{'O'}, 1<<20)
	if _, err := s3.Client().PutObject(context.Background(), &awss3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("latest.bin"), Body: bytes.NewReader(old)}); err != nil {
		t.Fatal(err)
	}
	p = filepath.Join(target, "latest.bin")
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	return p, old, f
}

// replaceFile gives the name p to a new file holding data: unlinked and
// written again, or written beside it and renamed over it.
func replaceFile(t *testing.T, how, p string, data []byte) {
	t.Helper()
	switch how {
	case "unlink":
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		writeRW(t, p, data)
	case "rename":
		tmp := filepath.Join(filepath.Dir(p), "."+filepath.Base(p)+".tmp")
		writeRW(t, tmp, data)
		if err := os.Rename(tmp, p); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("replaceFile: %q", how)
	}
}

// TestCachedNameTakenFromAHandleNotYetRead: a handle opened on a
// MOUNT_CACHED file and first read only after the name went to a new file
// (unlinked and written again, or renamed over) reads the old file (or,
// unlinked, nothing: none of it was cached and its object is deleted),
// and the new file stays whole, through the mount and in the bucket after an
// fsync and after the unstage. rclone opens a handle's cache item at its
// first read: opened then, the old item would take the name back, over
// the new file's cache file and metadata (detachFS opens it first).
func TestCachedNameTakenFromAHandleNotYetRead(t *testing.T) {
	for _, replace := range []string{"unlink", "rename"} {
		t.Run(replace, func(t *testing.T) {
			s3, _, c, id, bucket, staging, target := cachedVolume(t, "pvc-cached-lazy")
			p, old, reader := openOldFile(t, s3, bucket, target)
			want := bytes.Repeat([]byte("new "), 100_000)
			replaceFile(t, replace, p, want)
			got, err := io.ReadAll(reader)
			if cerr := reader.Close(); err == nil {
				err = cerr
			}
			switch {
			case replace == "unlink" && err != nil && len(got) == 0:
				// Nothing of the old file was cached and the unlink
				// deleted its object: there is nothing to read.
			case err != nil || !bytes.Equal(got, old):
				t.Fatalf("the handle opened before read %d bytes (%v), want the old file's %d", len(got), err, len(old))
			}
			if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("read through the mount after: %d bytes (%v), want the new file's %d", len(got), err, len(want))
			}
			syncReadOnly(t, p)
			if got, err := s3.ReadObject(t, bucket, "latest.bin"); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("after the fsync the bucket holds %d bytes (%v), want the new file's %d", len(got), err, len(want))
			}
			if _, err := c.Node.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
				t.Fatal(err)
			}
			unstageUntilDone(t, c, id, staging, 30*time.Second, 2*time.Minute)
			if got, err := s3.ReadObject(t, bucket, "latest.bin"); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("after the unstage the bucket holds %d bytes (%v), want the new file's %d", len(got), err, len(want))
			}
		})
	}
}

// writeRW writes data into a new file at p opened read-write: through
// rclone, not as a passthrough writer (whose end saves the metadata twice).
func writeRW(t *testing.T, p string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestCachedRenameOntoAPendingFile: a file already in the bucket renamed
// onto a MOUNT_CACHED file still waiting for its upload (written within
// the write-back delay) ends in the bucket, and reads, with the moved
// file's bytes, whether the moved file was never read (rclone alone keeps
// the target's cache item, reads its bytes and uploads them over the moved
// object) or was read before (and so is cached whole: the server fetches a
// file whole; rclone alone then uploads that cache file under the target's
// queued upload, which is right only because it is whole).
func TestCachedRenameOntoAPendingFile(t *testing.T) {
	for _, read := range []bool{false, true} {
		t.Run(fmt.Sprintf("read=%v", read), func(t *testing.T) {
			s3, _, c, id, bucket, staging, target := cachedVolume(t, "pvc-cached-rename-pending")
			moved := randomBytes(t, 3<<20)
			if _, err := s3.Client().PutObject(context.Background(), &awss3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("next.bin"), Body: bytes.NewReader(moved)}); err != nil {
				t.Fatal(err)
			}
			writeRW(t, filepath.Join(target, "current.bin"), []byte("pending, then replaced"))
			if read {
				f, err := os.Open(filepath.Join(target, "next.bin"))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := f.ReadAt(make([]byte, 4096), 0); err != nil {
					t.Fatal(err)
				}
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Rename(filepath.Join(target, "next.bin"), filepath.Join(target, "current.bin")); err != nil {
				t.Fatal(err)
			}
			if got, err := os.ReadFile(filepath.Join(target, "current.bin")); err != nil || !bytes.Equal(got, moved) {
				t.Fatalf("read through the mount after the rename: %d bytes (%v), want the moved file's %d", len(got), err, len(moved))
			}
			if _, err := c.Node.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
				t.Fatal(err)
			}
			unstageUntilDone(t, c, id, staging, 30*time.Second, 2*time.Minute)
			if got, err := s3.ReadObject(t, bucket, "current.bin"); err != nil || !bytes.Equal(got, moved) {
				t.Fatalf("after the unstage the bucket holds %d bytes at current.bin (%v), want the moved file's %d", len(got), err, len(moved))
			}
			if _, err := s3.ReadObject(t, bucket, "next.bin"); err == nil {
				t.Fatal("next.bin still in the bucket after the rename")
			}
		})
	}
}
