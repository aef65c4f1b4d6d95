package test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// cachedVolume provisions a MOUNT_CACHED volume and stages and publishes it.
// The driver runs with a long write-back delay so that files are reliably
// still pending when the test acts.
func cachedVolume(t *testing.T, name string) (*testenv.S3, *testenv.Driver, testenv.Clients, string, string, string, string) {
	t.Helper()
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t, "--write-back", "30s")
	vol, err := c.Controller.CreateVolume(context.Background(), createReq(name, map[string]string{"mode": "MOUNT_CACHED"}, s3.Secrets()))
	if err != nil {
		t.Fatal(err)
	}
	staging, target := podPaths(t, drv)
	publish(t, c, vol.GetVolume().GetVolumeId(), staging, target, s3.Secrets(), false)
	return s3, drv, c, vol.GetVolume().GetVolumeId(), vol.GetVolume().GetVolumeContext()["bucket"], staging, target
}

// writeFiles writes one large file and then n small ones under dir and
// returns their sha256 by relative path. The large one first: on a
// MOUNT_CACHED volume it is then a passthrough writer where the kernel
// offers it, and of the small ones about the first 32 are too (a writer
// is counted at its release, after its close) and any beyond are written
// through the server (writerPolicy in pkg/fuseserver).
func writeFiles(t *testing.T, dir string, n int) map[string][32]byte {
	t.Helper()
	sums := map[string][32]byte{}
	write := func(rel string, data []byte) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatalf("writing %s: %v", rel, err)
		}
		sums[rel] = sha256.Sum256(data)
	}
	write("ckpt/model.bin", randomBytes(t, 24<<20+7))
	for i := 0; i < n; i++ {
		write(fmt.Sprintf("ckpt/step-%03d.json", i), []byte(fmt.Sprintf(`{"step":%d}`, i)))
	}
	return sums
}

func assertInBucket(t *testing.T, s3 *testenv.S3, bucket string, sums map[string][32]byte) {
	t.Helper()
	for rel, want := range sums {
		got, err := s3.ReadObject(t, bucket, rel)
		if err != nil {
			t.Fatalf("%s is not in the bucket: %v", rel, err)
		}
		if sha256.Sum256(got) != want {
			t.Fatalf("%s: sha256 differs from what was written", rel)
		}
	}
}

// unstageUntilDone calls NodeUnstageVolume the way kubelet does, each call
// with its own deadline, until it succeeds; every failure must be a
// retryable code. It returns the number of retryable answers.
func unstageUntilDone(t *testing.T, c testenv.Clients, id, staging string, perCall, total time.Duration) int {
	t.Helper()
	retries := 0
	for deadline := time.Now().Add(total); ; {
		ctx, cancel := context.WithTimeout(context.Background(), perCall)
		_, err := c.Node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging})
		cancel()
		if err == nil {
			return retries
		}
		switch status.Code(err) {
		case codes.Unavailable, codes.Aborted, codes.DeadlineExceeded:
			retries++
			t.Logf("unstage answered %v (retryable): %s", status.Code(err), status.Convert(err).Message())
		default:
			t.Fatalf("unstage answered a final code: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("unstage did not finish within %s", total)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestCachedFlushBeforeRelease: writes land at disk speed and stay pending;
// NodeUnstage answers a retryable code while the store is unreachable,
// keeps the volume and cache, and succeeds once every file is in the
// bucket, byte for byte, after the store comes back.
func TestCachedFlushBeforeRelease(t *testing.T) {
	s3, drv, c, id, bucket, staging, target := cachedVolume(t, "pvc-cached-1")
	sums := writeFiles(t, target, 150)
	if _, err := c.Node.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
		t.Fatal(err)
	}
	if got, err := s3.ReadObject(t, bucket, "ckpt/model.bin"); err == nil {
		t.Fatalf("uploaded before the write-back delay (%d bytes): the test cannot see pending work", len(got))
	}
	// The store goes away: the unstage must not release anything.
	s3.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	_, err := c.Node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging})
	cancel()
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("unstage with the store down = %v, want Unavailable", err)
	}
	if staged := drv.Staged(t); len(staged) != 1 || !staged[0].Server.Alive() {
		t.Fatalf("volume released while uploads were pending: %+v", staged)
	}
	if err := s3.Restart(); err != nil {
		t.Fatal(err)
	}
	unstageUntilDone(t, c, id, staging, 30*time.Second, 3*time.Minute)
	assertInBucket(t, s3, bucket, sums)
	if left := drv.Staged(t); len(left) != 0 {
		t.Fatalf("state left after unstage: %+v", left)
	}
}

// TestCachedServerKilled: the FUSE server is SIGKILLed with uploads
// pending. A new NodeStage of the volume starts a server that resumes them;
// and a volume whose server died is drained at NodeUnstage too. With torn,
// the kill also lands inside rclone's rewrite of three files' cache metadata
// (the file left empty, as observed in a killed server's cache; rclone
// alone would then delete the files): the write journal keeps them, a
// renamed one under its new name. With reboot, nothing stays mounted (the
// pod's and the staging mounts, the cache's image): every server started
// for the volume mounts the image first, or the drain finds an empty cache
// and the unstage removes the image with the pending uploads. With legacy,
// the cache is then turned into what a version before images left: its
// files in the plain directory and no image; the volume keeps using that
// directory and loses nothing.
func TestCachedServerKilled(t *testing.T) {
	type tcase struct{ restage, torn, reboot, legacy bool }
	for _, tc := range []tcase{{true, false, false, false}, {false, false, false, false}, {true, true, false, false}, {false, true, false, false},
		{true, false, true, false}, {false, false, true, false}, {true, false, true, true}, {false, false, true, true}} {
		t.Run(fmt.Sprintf("restage=%v/torn=%v/reboot=%v/legacy=%v", tc.restage, tc.torn, tc.reboot, tc.legacy), func(t *testing.T) {
			s3, drv, c, id, bucket, staging, target := cachedVolume(t, "pvc-cached-kill")
			sums := writeFiles(t, target, 40)
			// Written, closed, then renamed: how checkpoints are saved.
			if err := os.Rename(filepath.Join(target, "ckpt", "step-000.json"), filepath.Join(target, "ckpt", "latest.json")); err != nil {
				t.Fatal(err)
			}
			sums["ckpt/latest.json"] = sums["ckpt/step-000.json"]
			delete(sums, "ckpt/step-000.json")
			killTheServer(t, drv)
			if tc.torn {
				for _, name := range []string{"model.bin", "step-039.json", "latest.json"} {
					tearCacheMeta(t, drv, filepath.Join("ckpt", name))
				}
			}
			if tc.reboot {
				// What a node's reboot leaves: nothing mounted, the
				// cache's image on disk with its pending uploads.
				for _, p := range []string{target, staging} {
					if err := unix.Unmount(p, unix.MNT_DETACH); err != nil {
						t.Fatal(err)
					}
				}
				// The killed server's last threads may still be closing
				// its files in the cache for a moment after it is reaped.
				for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
					err := unix.Unmount(cacheDirOf(t, drv), 0)
					if err == nil {
						break
					}
					if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
						t.Fatalf("unmounting the cache image: %v", err)
					}
				}
			}
			if tc.legacy {
				toPlainCache(t, cacheDirOf(t, drv))
			}
			if _, err := c.Node.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
				t.Fatalf("unpublish of a dead mount: %v", err)
			}
			if tc.restage {
				publish(t, c, id, staging, target, s3.Secrets(), false)
				if _, err := os.Stat(filepath.Join(target, "ckpt", "model.bin")); err != nil {
					t.Fatalf("pending file not visible after the repair: %v", err)
				}
				if _, err := c.Node.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
					t.Fatal(err)
				}
			}
			unstageUntilDone(t, c, id, staging, 30*time.Second, 2*time.Minute)
			assertInBucket(t, s3, bucket, sums)
		})
	}
}

// killTheServer kills (SIGKILL) the FUSE server of the one staged volume
// of drv and waits until it is gone.
func killTheServer(t *testing.T, drv *testenv.Driver) {
	t.Helper()
	staged := drv.Staged(t)
	if len(staged) != 1 {
		t.Fatalf("staged: %+v", staged)
	}
	if err := syscall.Kill(staged[0].Server.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testenv.MustBeGone(t, staged[0].Server)
}

// cacheDirOf is the cache directory of the one MOUNT_CACHED volume of drv.
func cacheDirOf(t *testing.T, drv *testenv.Driver) string {
	t.Helper()
	imgs, _ := filepath.Glob(filepath.Join(drv.StateDir, "cache", "*.img"))
	if len(imgs) != 1 {
		t.Fatalf("cache images: %v, want one", imgs)
	}
	return strings.TrimSuffix(imgs[0], ".img")
}

// toPlainCache turns the unmounted cache image of dir into a cache as a
// version before images kept it: the image's files copied into dir, the
// image removed.
func toPlainCache(t *testing.T, dir string) {
	t.Helper()
	tmp := t.TempDir()
	if out, err := exec.Command("mount", "-o", "loop,ro", dir+".img", tmp).CombinedOutput(); err != nil {
		t.Fatalf("mounting the image: %v: %s", err, out)
	}
	out, err := exec.Command("sh", "-c", "cd "+tmp+" && tar --exclude=./lost+found -cf - . | tar -C "+dir+" -xpf -").CombinedOutput()
	if uerr := unix.Unmount(tmp, 0); uerr != nil {
		t.Fatal(uerr)
	}
	if err != nil {
		t.Fatalf("copying the cache out of its image: %v: %s", err, out)
	}
	if err := os.Remove(dir + ".img"); err != nil {
		t.Fatal(err)
	}
}

// cacheMetaPath is the rclone cache metadata file of rel in the one
// MOUNT_CACHED cache of drv.
func cacheMetaPath(t *testing.T, drv *testenv.Driver, rel string) string {
	t.Helper()
	metas, _ := filepath.Glob(filepath.Join(drv.StateDir, "cache", "*", "vfsMeta", "*", "*", rel))
	if len(metas) != 1 {
		t.Fatalf("cache metadata of %s: found %v", rel, metas)
	}
	return metas[0]
}

// tearCacheMeta empties the cache metadata file of rel: what a server
// killed inside rclone's rewrite of it (create with truncation, then
// write) leaves.
func tearCacheMeta(t *testing.T, drv *testenv.Driver, rel string) {
	t.Helper()
	if err := os.Truncate(cacheMetaPath(t, drv, rel), 0); err != nil {
		t.Fatal(err)
	}
}

// TestCachedEditInPlaceSurvivesKill: bytes written into an existing
// object and closed survive a server killed before rclone's final save of
// the file's cache metadata, which alone lists the later writes as
// present; rclone alone fetches the bucket's old bytes over them on
// restart. The kill is made exact by putting back the metadata as rclone
// saved it at the first write.
func TestCachedEditInPlaceSurvivesKill(t *testing.T) {
	s3, drv, c, id, bucket, staging, target := cachedVolume(t, "pvc-cached-edit")
	want := bytes.Repeat([]byte{'A'}, 3<<20)
	if _, err := s3.Client().PutObject(context.Background(), &awss3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("db.bin"), Body: bytes.NewReader(want)}); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(target, "db.bin"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("BBBB"), 0); err != nil {
		t.Fatal(err)
	}
	early, err := os.ReadFile(cacheMetaPath(t, drv, "db.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("CCCC"), 2<<20); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	copy(want, "BBBB")
	copy(want[2<<20:], "CCCC")
	staged := drv.Staged(t)
	if len(staged) != 1 {
		t.Fatalf("staged: %+v", staged)
	}
	// The RELEASE is asynchronous: let rclone finish it, then undo its
	// last save.
	time.Sleep(500 * time.Millisecond)
	if err := syscall.Kill(staged[0].Server.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testenv.MustBeGone(t, staged[0].Server)
	if err := os.WriteFile(cacheMetaPath(t, drv, "db.bin"), early, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Node.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
		t.Fatal(err)
	}
	unstageUntilDone(t, c, id, staging, 30*time.Second, 2*time.Minute)
	got, err := s3.ReadObject(t, bucket, "db.bin")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("db.bin in the bucket: %q at 0, %q at 2 MiB, %d bytes; want BBBB, CCCC, %d", got[:4], got[2<<20:2<<20+4], len(got), len(want))
	}
}

// TestCachedFsyncUploadsOnlyChanges: fsync uploads a MOUNT_CACHED file
// only when it has changes not yet in the bucket. A file read through the
// mount and then replaced in the bucket by another client keeps the new
// object through an fsync of a read-only handle and of a read-write one
// that wrote nothing (before, both put the stale cached copy back over
// it). A new file fsynced before anything is written to it, and a file
// written and closed, then fsynced through a read-only handle (coreutils'
// `sync FILE`), are in the bucket when the fsync returns, long before the
// write-back delay (30s here).
func TestCachedFsyncUploadsOnlyChanges(t *testing.T) {
	s3, _, c, id, bucket, staging, target := cachedVolume(t, "pvc-cached-fsync-clean")
	old, newer := randomBytes(t, 1<<20), randomBytes(t, 1<<20)
	putObject(t, s3, bucket, "shared.bin", old)
	path := filepath.Join(target, "shared.bin")
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, old) {
		t.Fatalf("first read through the mount: %v or different bytes", err)
	}
	putObject(t, s3, bucket, "shared.bin", newer) // another client
	for _, flag := range []int{os.O_RDONLY, os.O_RDWR} {
		f, err := os.OpenFile(path, flag, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatalf("fsync of a clean file (flags %#x): %v", flag, err)
		}
		f.Close()
		if got, err := s3.ReadObject(t, bucket, "shared.bin"); err != nil || !bytes.Equal(got, newer) {
			t.Fatalf("after an fsync of a clean file (flags %#x) the bucket lost the newer object: %v", flag, err)
		}
	}

	// Created and fsynced with nothing written (a marker file): in the
	// bucket, empty, when the fsync returns.
	marker, err := os.Create(filepath.Join(target, "_SUCCESS"))
	if err != nil {
		t.Fatal(err)
	}
	if err := marker.Sync(); err != nil {
		t.Fatalf("fsync of a new empty file: %v", err)
	}
	if got, err := s3.ReadObject(t, bucket, "_SUCCESS"); err != nil || len(got) != 0 {
		t.Fatalf("after fsync of a new empty file the bucket does not hold it: %v (%d bytes)", err, len(got))
	}
	marker.Close()

	written := randomBytes(t, 2<<20)
	if err := os.WriteFile(filepath.Join(target, "mine.bin"), written, 0o644); err != nil {
		t.Fatal(err)
	}
	syncReadOnly(t, filepath.Join(target, "mine.bin"))
	if got, err := s3.ReadObject(t, bucket, "mine.bin"); err != nil || !bytes.Equal(got, written) {
		t.Fatalf("after fsync through a read-only handle the bucket does not hold the written file: %v (%d bytes)", err, len(got))
	}
	if _, err := c.Node.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
		t.Fatal(err)
	}
	unstageUntilDone(t, c, id, staging, 30*time.Second, time.Minute)
}

// TestCachedFsyncIsDurable: fsync on a MOUNT_CACHED file returns only once
// the file's content is in the bucket, even while the file stays open and
// long before the write-back delay (30s here) would upload it.
func TestCachedFsyncIsDurable(t *testing.T) {
	s3, _, c, id, bucket, staging, target := cachedVolume(t, "pvc-cached-fsync")
	if err := os.MkdirAll(filepath.Join(target, "ckpt"), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(target, "ckpt", "step-1.pt"))
	if err != nil {
		t.Fatal(err)
	}
	first := randomBytes(t, 3<<20)
	if _, err := f.Write(first); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync: %v", err)
	}
	got, err := s3.ReadObject(t, bucket, "ckpt/step-1.pt")
	if err != nil || sha256.Sum256(got) != sha256.Sum256(first) {
		t.Fatalf("after fsync the bucket does not hold the file: %v (%d bytes)", err, len(got))
	}
	more := []byte("appended after the first fsync")
	if _, err := f.Write(more); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	got, _ = s3.ReadObject(t, bucket, "ckpt/step-1.pt")
	if len(got) != len(first)+len(more) {
		t.Fatalf("second fsync: bucket holds %d bytes, want %d", len(got), len(first)+len(more))
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Node.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
		t.Fatal(err)
	}
	unstageUntilDone(t, c, id, staging, 30*time.Second, time.Minute)
}

// syncReadOnly fsyncs path through a handle opened read-only (as
// coreutils' sync FILE does).
func syncReadOnly(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync of %s through a read-only handle: %v", path, err)
	}
}
