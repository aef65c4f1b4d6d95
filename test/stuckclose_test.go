package test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bucket-csi/bucket-csi/pkg/mounter"
	"github.com/bucket-csi/bucket-csi/pkg/stage"
	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// TestCachedStuckCloseIsQueued: a file only partly in the cache, edited
// and closed while the store refuses every ranged GET. rclone's close
// cannot fetch the ranges it lacks and returns without queueing the file,
// which stays dirty (nothing lost, the volume reads busy); no retry comes
// while the server runs. The server counts it stuck after
// --upload-stuck-after (here 2 s); once the store answers again, the
// unstage stops the server, the next one queues the file at its start, and
// the bucket gets the edited file whole. Before, every unstage answered
// Unavailable until the server was restarted some other way.
func TestCachedStuckCloseIsQueued(t *testing.T) {
	testenv.RequireFUSE(t)
	s3 := testenv.StartS3(t)
	target, err := url.Parse(s3.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	var down atomic.Bool
	rp := httputil.NewSingleHostReverseProxy(target)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() && r.Method == http.MethodGet && r.Header.Get("Range") != "" {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>injected</Message></Error>`))
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)

	const bucket = "stuck-close"
	if err := s3.Store(t).CreateBucket(context.Background(), bucket); err != nil {
		t.Fatal(err)
	}
	orig := randomBytes(t, 8<<20)
	putObject(t, s3, bucket, "data.bin", orig)
	through := *s3.S3
	through.Endpoint = proxy.URL
	drv := testenv.StartDriver(t, &testenv.S3{S3: &through}, "--upload-stuck-after", "2s")
	c := drv.Dial(t)
	id, staging := stageSourceCached(t, c, drv, "pv-stuck", bucket, s3.Secrets())

	down.Store(true)
	f, err := os.OpenFile(filepath.Join(staging, "data.bin"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("EDITED"), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	// The server counts the file stuck: closed, dirty, not queued.
	recs := drv.Staged(t)
	if len(recs) != 1 {
		t.Fatalf("staged: %+v", recs)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := mounter.Query(ctx, stage.ControlSocket(recs[0]), false)
		cancel()
		if err == nil && st.Stuck == 1 && st.Pending == 0 {
			t.Logf("stuck: %s", st)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the file was never counted stuck: %+v, %v", st, err)
		}
	}
	down.Store(false)

	retries := unstageUntilDone(t, c, id, staging, 15*time.Second, 2*time.Minute)
	t.Logf("unstage answered %d retryable codes first", retries)
	got, err := s3.ReadObject(t, bucket, "data.bin")
	want := append([]byte("EDITED"), orig[6:]...)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the bucket's data.bin: %d bytes, err %v, equal %v", len(got), err, bytes.Equal(got, want))
	}
}
