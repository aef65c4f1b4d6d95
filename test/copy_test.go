package test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/xml"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bucket-csi/bucket-csi/pkg/mountpoint"
	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// fillSource creates bucket with n small objects and one large one, and
// returns their sha256 by key.
func fillSource(t *testing.T, s3 *testenv.S3, bucket string, n int) map[string][32]byte {
	t.Helper()
	ctx := context.Background()
	st := s3.Store(t)
	if err := st.CreateBucket(ctx, bucket); err != nil {
		t.Fatal(err)
	}
	sums := map[string][32]byte{}
	putObj := func(key string, data []byte) {
		if err := st.PutObject(ctx, bucket, key, data); err != nil {
			t.Fatal(err)
		}
		sums[key] = sha256.Sum256(data)
	}
	for i := 0; i < n; i++ {
		putObj(fmt.Sprintf("shard-%02d/item-%04d.json", i%10, i), []byte(strings.Repeat(fmt.Sprint(i), 100)))
	}
	putObj("weights/model.bin", randomBytes(t, 40<<20+11))
	return sums
}

func stageCopy(t *testing.T, c testenv.Clients, id, staging string, secrets map[string]string) error {
	t.Helper()
	if err := os.MkdirAll(staging, 0o750); err != nil {
		t.Fatal(err)
	}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		_, err := c.Node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: testenv.MountCap(rwx), Secrets: secrets})
		cancel()
		if status.Code(err) != codes.Unavailable {
			return err
		}
	}
}

// TestCopyMode: COPY downloads the prefix (sha256 equal), publishes it,
// keeps writes local, fetches only changed objects on a re-stage, and
// refuses up front when the disk cannot hold the data.
func TestCopyMode(t *testing.T) {
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t, "--keep-copies")
	sums := fillSource(t, s3, "training-data", 300)
	ctx := context.Background()
	vol, err := c.Controller.CreateVolume(ctx, createReq("pv-copy", map[string]string{"source": "s3://training-data", "mode": "COPY"}, s3.Secrets()))
	if err != nil {
		t.Fatal(err)
	}
	id := vol.GetVolume().GetVolumeId()
	staging, target := podPaths(t, drv)
	if err := stageCopy(t, c, id, staging, s3.Secrets()); err != nil {
		t.Fatalf("NodeStageVolume (COPY): %v", err)
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: target, VolumeCapability: testenv.MountCap(rwx)}); err != nil {
		t.Fatal(err)
	}
	for key, want := range sums {
		got, err := os.ReadFile(filepath.Join(target, key))
		if err != nil || sha256.Sum256(got) != want {
			t.Fatalf("%s in the copy: err %v or sha256 differs", key, err)
		}
	}
	if err := os.WriteFile(filepath.Join(target, "local-only.txt"), []byte("x"), 0o644); err != nil {
		t.Fatalf("writing to a COPY volume: %v", err)
	}
	unpublish(t, c, id, staging, target)
	if _, err := s3.ReadObject(t, "training-data", "local-only.txt"); err == nil {
		t.Fatal("a write to a COPY volume reached the bucket")
	}
	// Re-stage after one object changed: only it is downloaded again.
	if err := s3.Store(t).PutObject(ctx, "training-data", "shard-03/item-0003.json", []byte("changed")); err != nil {
		t.Fatal(err)
	}
	if err := stageCopy(t, c, id, staging, s3.Secrets()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(drv.Log.String(), "downloaded=1 ") {
		t.Fatalf("re-stage did not fetch exactly the one changed object; driver log:\n%s", drv.Log.String())
	}
	if got, _ := os.ReadFile(filepath.Join(staging, "shard-03/item-0003.json")); string(got) != "changed" {
		t.Fatalf("changed object not updated: %q", got)
	}
	if _, err := c.Node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
		t.Fatal(err)
	}
}

// TestCopyRefusedWhenDiskTooSmall: a node whose copy disk is smaller than
// the data answers ResourceExhausted with both figures, and publishes
// nothing.
func TestCopyRefusedWhenDiskTooSmall(t *testing.T) {
	testenv.RequireFUSE(t)
	small := filepath.Join(t.TempDir(), "small")
	if err := os.MkdirAll(small, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", small, "tmpfs", 0, "size=8m"); err != nil {
		testenv.Missing(t, "mounting a tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(small, unix.MNT_DETACH) })
	s3, drv, c := startAll(t, "--state-dir", small)
	fillSource(t, s3, "too-big", 3)
	vol, err := c.Controller.CreateVolume(context.Background(), createReq("pv-big", map[string]string{"source": "s3://too-big", "mode": "COPY"}, s3.Secrets()))
	if err != nil {
		t.Fatal(err)
	}
	staging := filepath.Join(drv.TempDir(t), "staging")
	err = stageCopy(t, c, vol.GetVolume().GetVolumeId(), staging, s3.Secrets())
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "bytes are free") {
		t.Fatalf("stage of a copy larger than the disk = %v, want ResourceExhausted with the figures", err)
	}
	if ok, _ := mountpoint.Mounted(staging); ok {
		t.Fatal("a refused copy was published")
	}
}

// faultProxy is a reverse proxy in front of a real S3 server that answers
// GETs of some keys with an error of its own and holds GETs of others until
// released: an object the store refuses to serve, one deleted between the
// listing and the download, and a slow one.
type faultProxy struct {
	*httptest.Server
	fail map[string]int // "/bucket/key" -> HTTP status of its GET
	hold map[string]chan struct{}
	// listed are keys added to every listing of the bucket, as a store
	// that keeps any key would list them (the server's own filesystem
	// cannot hold "a//b" or a name over 255 bytes).
	listed   map[string][]string // bucket -> keys
	injected atomic.Int64        // listings that got them
}

func startFaultProxy(t *testing.T, target string, fail map[string]int, hold map[string]chan struct{}) *faultProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	p := &faultProxy{fail: fail, hold: hold}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			if status, ok := p.fail[r.URL.Path]; ok {
				code := map[int]string{403: "AccessDenied", 404: "NoSuchKey"}[status]
				w.Header().Set("Content-Type", "application/xml")
				w.WriteHeader(status)
				fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>injected</Message></Error>`, code)
				return
			}
			if ch, ok := p.hold[r.URL.Path]; ok {
				select {
				case <-ch:
				case <-r.Context().Done():
					return
				}
			}
		}
		if keys := p.listed[strings.Trim(r.URL.Path, "/")]; r.Method == http.MethodGet && keys != nil {
			rec := httptest.NewRecorder()
			rp.ServeHTTP(rec, r)
			body := rec.Body.String()
			if strings.Contains(body, "</ListBucketResult>") {
				body = injectListing(body, r.URL.Query(), keys)
				p.injected.Add(1)
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
			w.WriteHeader(rec.Code)
			_, _ = io.WriteString(w, body)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

// TestCopyStagesWithoutBadKeys: a bucket holding keys that cannot be files (a ".."
// segment, an empty segment, a name too long for the node, a key that is
// also a prefix) and objects
// whose GET fails (refused, gone since the listing) stages: NodeStage
// answers Unavailable with progress while the copy runs, then OK, the
// copy holds every other file, and the driver logs the count with
// examples.
func TestCopyStagesWithoutBadKeys(t *testing.T) {
	testenv.RequireFUSE(t)
	s3 := testenv.StartS3(t)
	release := make(chan struct{})
	proxy := startFaultProxy(t, s3.Endpoint, map[string]int{"/bad-keys/denied.bin": 403, "/bad-keys/gone.bin": 404},
		map[string]chan struct{}{"/bad-keys/slow.bin": release})
	through := *s3.S3
	through.Endpoint = proxy.URL
	drv := testenv.StartDriver(t, &testenv.S3{S3: &through})
	c := drv.Dial(t)
	ctx := context.Background()
	if err := s3.Store(t).CreateBucket(ctx, "bad-keys"); err != nil {
		t.Fatal(err)
	}
	good := map[string]string{"ok/a.txt": "a", "ok/b.txt": "b", "top.txt": "top", "slow.bin": "slow", "dup/child": "c"}
	// Keys the server's filesystem cannot hold are added to its listing
	// by the proxy, as a store that keeps any key lists them.
	proxy.listed = map[string][]string{"bad-keys": {"dots/../escape.txt", "empty//segment.txt", "long/" + strings.Repeat("n", 300), "dup"}}
	bad := append([]string{"denied.bin", "gone.bin"}, proxy.listed["bad-keys"]...)
	cl := s3.Client()
	for k, v := range good {
		putRaw(t, cl, "bad-keys", k, v)
	}
	putRaw(t, cl, "bad-keys", "denied.bin", "refused")
	putRaw(t, cl, "bad-keys", "gone.bin", "deleted between the listing and the download")
	vol, err := c.Controller.CreateVolume(ctx, createReq("pv-bad-keys", map[string]string{"source": "s3://bad-keys", "mode": "COPY"}, s3.Secrets()))
	if err != nil {
		t.Fatal(err)
	}
	id := vol.GetVolume().GetVolumeId()
	staging, target := podPaths(t, drv)
	if err := os.MkdirAll(staging, 0o750); err != nil {
		t.Fatal(err)
	}
	stage := func(timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_, err := c.Node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: testenv.MountCap(rwx), Secrets: s3.Secrets()})
		return err
	}
	// While slow.bin is held the copy runs: Unavailable with progress.
	var codesSeen []codes.Code
	err = stage(7 * time.Second)
	codesSeen = append(codesSeen, status.Code(err))
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "so far") {
		t.Fatalf("NodeStage while the copy runs = %v, want Unavailable with progress", err)
	}
	close(release)
	err = stage(2 * time.Minute)
	codesSeen = append(codesSeen, status.Code(err))
	if err != nil {
		t.Fatalf("NodeStage after the copy = %v, want OK (answers: %v)", err, codesSeen)
	}
	if fmt.Sprint(codesSeen) != fmt.Sprint([]codes.Code{codes.Unavailable, codes.OK}) {
		t.Fatalf("NodeStage answered %v, want [Unavailable OK]", codesSeen)
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: target, VolumeCapability: testenv.MountCap(rwx)}); err != nil {
		t.Fatal(err)
	}
	var files []string
	_ = filepath.WalkDir(target, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p[len(target)+1:])
		}
		return nil
	})
	slices.Sort(files)
	want := slices.Sorted(maps.Keys(good))
	if !slices.Equal(files, want) {
		t.Fatalf("the pod sees %v, want exactly %v", files, want)
	}
	for k, v := range good {
		if got, _ := os.ReadFile(filepath.Join(target, k)); string(got) != v {
			t.Fatalf("%s holds %q, want %q", k, got, v)
		}
	}
	log := drv.Log.String()
	if !strings.Contains(log, "COPY left out objects") || !strings.Contains(log, "count="+fmt.Sprint(len(bad))) || !strings.Contains(log, "denied.bin") {
		t.Fatalf("the driver did not log the %d keys left out with examples; log:\n%s", len(bad), log)
	}
	unpublish(t, c, id, staging, target)
	if _, err := c.Node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
		t.Fatal(err)
	}
}

// putRaw writes an object with the independent S3 client, key as given.
func putRaw(t *testing.T, cl *s3.Client, bucket, key, data string) {
	t.Helper()
	if _, err := cl.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader(data)}); err != nil {
		t.Fatalf("writing key %q: %v", key, err)
	}
}

// injectListing adds keys to a ListObjectsV2 answer for the request's
// prefix and delimiter: a key below a delimiter becomes a common prefix.
func injectListing(body string, q url.Values, keys []string) string {
	prefix, delim := q.Get("prefix"), q.Get("delimiter")
	enc := func(k string) string {
		if q.Get("encoding-type") == "url" {
			return url.QueryEscape(k)
		}
		var b strings.Builder
		_ = xml.EscapeText(&b, []byte(k))
		return b.String()
	}
	var add strings.Builder
	seen := map[string]bool{}
	for _, k := range keys {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		if i := strings.Index(rest, delim); delim != "" && i >= 0 {
			cp := prefix + rest[:i+len(delim)]
			if !seen[cp] && !strings.Contains(body, "<Prefix>"+enc(cp)+"</Prefix></CommonPrefixes>") {
				fmt.Fprintf(&add, "<CommonPrefixes><Prefix>%s</Prefix></CommonPrefixes>", enc(cp))
			}
			seen[cp] = true
			continue
		}
		fmt.Fprintf(&add, `<Contents><Key>%s</Key><LastModified>2026-01-02T03:04:05.000Z</LastModified><ETag>"0cc175b9c0f1b6a831c399e269772661"</ETag><Size>1</Size><StorageClass>STANDARD</StorageClass></Contents>`, enc(k))
	}
	return strings.Replace(body, "</ListBucketResult>", add.String()+"</ListBucketResult>", 1)
}

// TestMountHidesBadKeys: in a MOUNT volume, keys no directory can show
// (an empty segment, "." and ".." segments, a name over 255 bytes, a file
// that is also a prefix) are hidden: every directory lists without error
// and shows exactly its good entries.
func TestMountHidesBadKeys(t *testing.T) {
	testenv.RequireFUSE(t)
	s3 := testenv.StartS3(t)
	proxy := startFaultProxy(t, s3.Endpoint, nil, nil)
	proxy.listed = map[string][]string{"odd-keys": {
		"e//x", "d/../x", "./x", "dot/./x", "long/" + strings.Repeat("n", 300), "dup",
	}}
	through := *s3.S3
	through.Endpoint = proxy.URL
	drv := testenv.StartDriver(t, &testenv.S3{S3: &through})
	c := drv.Dial(t)
	ctx := context.Background()
	if err := s3.Store(t).CreateBucket(ctx, "odd-keys"); err != nil {
		t.Fatal(err)
	}
	cl := s3.Client()
	for _, k := range []string{"top.txt", "e/ok", "d/ok", "dot/ok", "long/ok", "dup/child"} {
		putRaw(t, cl, "odd-keys", k, "ok")
	}
	vol, err := c.Controller.CreateVolume(ctx, createReq("pv-odd-keys", map[string]string{"source": "s3://odd-keys", "mode": "MOUNT"}, s3.Secrets()))
	if err != nil {
		t.Fatal(err)
	}
	id := vol.GetVolume().GetVolumeId()
	staging, target := podPaths(t, drv)
	publish(t, c, id, staging, target, s3.Secrets(), true)
	for dir, want := range map[string][]string{
		"": {"d", "dot", "dup", "e", "long", "top.txt"}, "e": {"ok"}, "d": {"ok"}, "dot": {"ok"}, "long": {"ok"}, "dup": {"child"},
	} {
		names, err := readdirAll(filepath.Join(target, dir))
		if err != nil {
			t.Errorf("listing %q of the mount: %v", dir, err)
			continue
		}
		if !slices.Equal(names, want) {
			t.Errorf("%q lists %q, want %q", dir, names, want)
		}
	}
	if proxy.injected.Load() == 0 {
		t.Fatal("no listing went through the proxy with the odd keys")
	}
	if st, err := os.Stat(filepath.Join(target, "dup")); err != nil || !st.IsDir() {
		t.Errorf("dup is not the directory: %v %v", st, err)
	}
	unpublish(t, c, id, staging, target)
	if _, err := c.Node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
		t.Fatal(err)
	}
}

// readdirAll lists dir with getdents as ls does, "." and ".." included
// when the kernel reports them, and returns the other names sorted; a
// duplicate "." or ".." counts as a name.
func readdirAll(dir string) ([]string, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var names []string
	dots := 0
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			break
		}
		_, _, more := unix.ParseDirent(buf[:n], -1, nil)
		for _, name := range more {
			names = append(names, name)
		}
		// ParseDirent drops "." and ".."; count them from the raw records.
		for off := 0; off < n; {
			reclen := int(binary.LittleEndian.Uint16(buf[off+16:]))
			name := buf[off+19 : off+reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			if string(name) == "." || string(name) == ".." {
				dots++
			}
			off += reclen
		}
	}
	if dots > 2 {
		names = append(names, fmt.Sprintf("(%d dot entries)", dots))
	}
	slices.Sort(names)
	return names, nil
}
