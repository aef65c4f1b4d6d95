package test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/rclone/rclone/lib/ranges"
	"github.com/rclone/rclone/vfs/vfscache"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// refusingS3 puts a proxy in front of s3 that answers every request
// refuse picks with 403 AccessDenied (no retry helps) and passes the
// others. It returns the store as seen through the proxy.
func refusingS3(t *testing.T, s3 *testenv.S3, refuse func(*http.Request) bool) *testenv.S3 {
	t.Helper()
	target, err := url.Parse(s3.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if refuse(r) {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>injected by the test</Message></Error>`))
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)
	through := *s3.S3
	through.Endpoint = proxy.URL
	return &testenv.S3{S3: &through}
}

// bucketWith creates bucket holding key with n random bytes, and returns
// them.
func bucketWith(t *testing.T, s3 *testenv.S3, bucket, key string, n int) []byte {
	t.Helper()
	if err := s3.Store(t).CreateBucket(context.Background(), bucket); err != nil {
		t.Fatal(err)
	}
	data := randomBytes(t, n)
	putObject(t, s3, bucket, key, data)
	return data
}

// TestCachedChangeFetchesTheFileFirst: on a MOUNT_CACHED volume, the first
// change to a file of the bucket that is not wholly in the cache fetches
// the rest of it first. While the store refuses reads, a write and a
// truncate fail with EIO and change nothing; once it answers, the write
// fetches the file, and the close, with the store refusing reads again,
// needs nothing from it: the edited file reads back whole and reaches the
// bucket with the bucket's other bytes around the edit. A second change,
// with the store answering nothing and the directory's listing expired,
// needs nothing from the store either.
//
// Before, the write succeeded and rclone fetched the missing bytes at the
// close: refused, the close failed silently, leaving the file dirty and
// unqueued (the unstage waited for a server restart), and the next open
// made rclone remove the cached file, the edit with it.
func TestCachedChangeFetchesTheFileFirst(t *testing.T) {
	testenv.RequireFUSE(t)
	s3 := testenv.StartS3(t)
	var refuse, down atomic.Bool
	// A ranged GET is the only way the driver reads an object's bytes;
	// down refuses everything.
	through := refusingS3(t, s3, func(r *http.Request) bool {
		return down.Load() || refuse.Load() && r.Method == http.MethodGet && r.Header.Get("Range") != ""
	})
	const bucket = "fetch-first"
	orig := bucketWith(t, s3, bucket, "data.bin", 8<<20)
	drv := testenv.StartDriver(t, through, "--dir-cache-time", "1s")
	c := drv.Dial(t)
	id, staging := stageSourceCached(t, c, drv, "pv-fetch-first", bucket, s3.Secrets())
	file := filepath.Join(staging, "data.bin")
	edit := []byte("EDITED")
	want := append(append([]byte(nil), edit...), orig[len(edit):]...)

	refuse.Store(true)
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(edit, 0); !errors.Is(err, syscall.EIO) {
		t.Fatalf("a write while the store refuses reads: err %v, want EIO (the rest of the file cannot be fetched)", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("closing the unchanged file: %v", err)
	}
	if err := os.Truncate(file, 4<<20); !errors.Is(err, syscall.EIO) {
		t.Fatalf("a truncate while the store refuses reads: err %v, want EIO", err)
	}

	refuse.Store(false)
	f, err = os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// rclone keeps a file's downloaders, with their count of failures, for
	// its handle grace (5 s) after the last close, and they fail a read at
	// once until one of their downloads succeeds: the first write after the
	// store answers again may still fail.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		_, err := f.WriteAt(edit, 0)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EIO) || time.Now().After(deadline) {
			t.Fatalf("a write while the store answers: %v", err)
		}
		t.Logf("a write right after the store answers again: %v", err)
	}
	refuse.Store(true)
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	got, err := os.ReadFile(file)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("reading the edited file back while the store refuses reads: %d bytes, err %v, equal %v", len(got), err, bytes.Equal(got, want))
	}
	// A file whole in the cache needs no store for a change, also once the
	// directory's listing expired (a lookup would list it again).
	f, err = os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	down.Store(true)
	time.Sleep(1500 * time.Millisecond)
	again := []byte("AGAIN!")
	if _, err := f.WriteAt(again, int64(len(edit))); err != nil {
		t.Fatalf("a write to a file whole in the cache while the store answers nothing: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	copy(want[len(edit):], again)
	down.Store(false)
	refuse.Store(false)

	retries := unstageUntilDone(t, c, id, staging, 15*time.Second, 2*time.Minute)
	t.Logf("unstage answered %d retryable codes first", retries)
	got, err = s3.ReadObject(t, bucket, "data.bin")
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the bucket's data.bin: %d bytes, err %v, equal %v", len(got), err, bytes.Equal(got, want))
	}
}

// TestCachedChangeAfterObjectReplaced: a file wholly cached, then replaced
// in the bucket by another writer, is stale: rclone drops the cached copy
// when the file is opened for the change. The change fetches the new
// object whole first, so the close needs nothing from the store: with
// ranged GETs refused at the close, the edit of the new content reads back
// whole and reaches the bucket. Before, the metadata's "every byte
// present" stood for the old copy, nothing was fetched, and the close
// failed.
func TestCachedChangeAfterObjectReplaced(t *testing.T) {
	testenv.RequireFUSE(t)
	s3 := testenv.StartS3(t)
	var refuse atomic.Bool
	through := refusingS3(t, s3, func(r *http.Request) bool {
		return refuse.Load() && r.Method == http.MethodGet && r.Header.Get("Range") != ""
	})
	const bucket = "replaced"
	old := bucketWith(t, s3, bucket, "data.bin", 4<<20)
	drv := testenv.StartDriver(t, through, "--dir-cache-time", "1s")
	c := drv.Dial(t)
	id, staging := stageSourceCached(t, c, drv, "pv-replaced", bucket, s3.Secrets())
	file := filepath.Join(staging, "data.bin")
	if got, err := os.ReadFile(file); err != nil || !bytes.Equal(got, old) {
		t.Fatalf("first read: %d bytes, err %v", len(got), err)
	}
	// Past the handle grace (rclone keeps the read's item open 5 s) and
	// the listing's life.
	time.Sleep(6 * time.Second)
	replaced := randomBytes(t, 4<<20)
	putObject(t, s3, bucket, "data.bin", replaced)
	time.Sleep(1500 * time.Millisecond)

	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	edit := []byte("EDITED")
	if _, err := f.WriteAt(edit, 0); err != nil {
		t.Fatalf("write: %v", err)
	}
	refuse.Store(true)
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	want := append(append([]byte(nil), edit...), replaced[len(edit):]...)
	if got, err := os.ReadFile(file); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("reading the edit of the new content back while ranged GETs are refused: %d bytes, err %v, equal %v, equal to the old content %v", len(got), err, bytes.Equal(got, want), err == nil && bytes.Equal(got[len(edit):], old[len(edit):]))
	}
	refuse.Store(false)
	unstageUntilDone(t, c, id, staging, 15*time.Second, 2*time.Minute)
	if got, err := s3.ReadObject(t, bucket, "data.bin"); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the bucket's data.bin: %d bytes, err %v, equal %v", len(got), err, bytes.Equal(got, want))
	}
}

// TestCachedLegacyPartialFileNotUploadedWithZeros: a cache as a version
// before this one could leave it after its server was killed: a file
// waiting for upload (an edit of its first bytes) whose other bytes were
// never fetched. The next server must not start while the store does not
// answer for that file (the unstage answers a retryable code and the
// bucket keeps its bytes); once it answers, the server fetches the bytes
// the file lacks before rclone queues it, and the bucket gets the edit
// with its own bytes around it. Before, the drain server started, rclone
// found no object and queued the file as it was, and the upload put zeros
// over the bucket's bytes.
func TestCachedLegacyPartialFileNotUploadedWithZeros(t *testing.T) {
	testenv.RequireFUSE(t)
	s3 := testenv.StartS3(t)
	const bucket = "legacy-partial"
	var down atomic.Bool
	// While down, the store answers nothing about the bucket's objects
	// (HEAD and GET of a key); listings and uploads pass.
	through := refusingS3(t, s3, func(r *http.Request) bool {
		key := strings.Contains(strings.Trim(r.URL.Path, "/"), "/")
		return down.Load() && key && (r.Method == http.MethodGet || r.Method == http.MethodHead)
	})
	orig := bucketWith(t, s3, bucket, "data.bin", 8<<20)
	drv := testenv.StartDriver(t, through)
	c := drv.Dial(t)
	id, staging := stageSourceCached(t, c, drv, "pv-legacy-partial", bucket, s3.Secrets())
	// A read puts the file's item into the cache.
	f, err := os.Open(filepath.Join(staging, "data.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadAt(make([]byte, 4096), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	killTheServer(t, drv)

	edit := []byte("EDITED")
	toLegacyPartialEdit(t, drv, "data.bin", edit, int64(len(orig)))
	down.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	_, err = c.Node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging})
	cancel()
	if code := status.Code(err); code != codes.Unavailable {
		t.Fatalf("unstage while the store does not answer for a file only it can complete: %v, want Unavailable", err)
	}
	t.Logf("unstage while the store does not answer: %v", err)
	if got, err := s3.ReadObject(t, bucket, "data.bin"); err != nil || !bytes.Equal(got, orig) {
		t.Fatalf("the bucket's data.bin changed while the store did not answer: %d bytes, err %v", len(got), err)
	}
	down.Store(false)

	unstageUntilDone(t, c, id, staging, 30*time.Second, 2*time.Minute)
	want := append(append([]byte(nil), edit...), orig[len(edit):]...)
	got, err := s3.ReadObject(t, bucket, "data.bin")
	if err != nil || !bytes.Equal(got, want) {
		zeros := 0
		for i := len(edit); i < len(got); i++ {
			if got[i] == 0 {
				zeros++
			}
		}
		t.Fatalf("the bucket's data.bin: %d bytes, err %v, equal %v, %d zero bytes after the edit", len(got), err, bytes.Equal(got, want), zeros)
	}
}

// toLegacyPartialEdit turns rel's item in the one MOUNT_CACHED cache of
// drv (its server gone) into a file waiting for upload with only edit, at
// its start, present: the data file holds edit and holes up to size, the
// metadata says dirty with edit's range present.
func toLegacyPartialEdit(t *testing.T, drv *testenv.Driver, rel string, edit []byte, size int64) {
	t.Helper()
	meta := cacheMetaPath(t, drv, rel)
	var info vfscache.Info
	if data, err := os.ReadFile(meta); err != nil {
		t.Fatal(err)
	} else if err := json.Unmarshal(data, &info); err != nil {
		t.Fatalf("decoding %s: %v", meta, err)
	}
	info.Size, info.Dirty, info.ModTime = size, true, time.Now()
	info.Rs = ranges.Ranges{{Pos: 0, Size: int64(len(edit))}}
	data, err := json.MarshalIndent(info, "", "\t") // as rclone writes it
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(meta, data, 0o600); err != nil {
		t.Fatal(err)
	}
	dataPath := strings.Replace(meta, string(filepath.Separator)+"vfsMeta"+string(filepath.Separator), string(filepath.Separator)+"vfs"+string(filepath.Separator), 1)
	if err := os.Truncate(dataPath, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dataPath, edit, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(dataPath, size); err != nil {
		t.Fatal(err)
	}
}
