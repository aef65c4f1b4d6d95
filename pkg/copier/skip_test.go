package copier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	rfs "github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/walk"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
)

// statusError is a store's HTTP answer, as the SDKs report it.
type statusError int

func (e statusError) Error() string       { return fmt.Sprintf("http %d", int(e)) }
func (e statusError) HTTPStatusCode() int { return int(e) }

// faultyFs is a real rclone Fs (the memory backend) whose objects fail to
// open as failures says (the GET answers with that error), and whose
// listing also holds the keys of aliases: keys rclone's own backends clean
// up when written (a/../b), listed as a store that keeps them would, each
// reading the stored object it names.
type faultyFs struct {
	rfs.Fs
	failures map[string]error
	// rangeFailures fails only the ranged GET of a key from that offset.
	rangeFailures map[string]int64
	aliases       map[string]string
	ft            *rfs.Features
	opens         sync.Map // key -> *atomic.Int64
}

func newFaultyFs(base rfs.Fs, failures map[string]error) *faultyFs {
	f := &faultyFs{Fs: base, failures: failures}
	f.ft = (&rfs.Features{}).Fill(context.Background(), f)
	f.ft.ListR = func(ctx context.Context, dir string, cb rfs.ListRCallback) error {
		err := walk.ListR(ctx, base, dir, true, -1, walk.ListObjects, func(entries rfs.DirEntries) error {
			out := make(rfs.DirEntries, len(entries))
			for i, e := range entries {
				if o, ok := e.(rfs.Object); ok {
					e = &faultyObject{Object: o, f: f, remote: o.Remote()}
				}
				out[i] = e
			}
			return cb(out)
		})
		if err != nil {
			return err
		}
		var extra rfs.DirEntries
		for key, stored := range f.aliases {
			o, err := base.NewObject(ctx, stored)
			if err != nil {
				return err
			}
			extra = append(extra, &faultyObject{Object: o, f: f, remote: key})
		}
		return cb(extra)
	}
	return f
}

func (f *faultyFs) Features() *rfs.Features { return f.ft }

func (f *faultyFs) opened(key string) int64 {
	n, _ := f.opens.LoadOrStore(key, &atomic.Int64{})
	return n.(*atomic.Int64).Load()
}

type faultyObject struct {
	rfs.Object
	f      *faultyFs
	remote string
}

func (o *faultyObject) Remote() string { return o.remote }

func (o *faultyObject) Open(ctx context.Context, options ...rfs.OpenOption) (io.ReadCloser, error) {
	n, _ := o.f.opens.LoadOrStore(o.Remote(), &atomic.Int64{})
	n.(*atomic.Int64).Add(1)
	if err := o.f.failures[o.Remote()]; err != nil {
		return nil, err
	}
	if at, ok := o.f.rangeFailures[o.Remote()]; ok {
		for _, opt := range options {
			if r, isRange := opt.(*rfs.RangeOption); isRange && r.Start == at {
				return nil, fmt.Errorf("GetObject: %w", statusError(403))
			}
		}
	}
	return o.Object.Open(ctx, options...)
}

// TestCopySkipsBadKeys: keys that cannot be files and objects that cannot
// be fetched (refused, deleted since the listing, failing after the
// retries) are left out and counted, and every other file is copied.
func TestCopySkipsBadKeys(t *testing.T) {
	long := strings.Repeat("n", 256)
	objs := map[string][]byte{
		"ok/a.txt": []byte("a"), "ok/b.txt": []byte("b"), "top": []byte("t"), "dir/" + long: []byte("x"),
		"dup": []byte("file"), "dup/child": []byte("c"),
		"denied.bin": []byte("secret"), "gone.bin": []byte("gone"), "broken.bin": []byte("broken"),
	}
	base := memFs(t, objs)
	f := newFaultyFs(base, map[string]error{
		"denied.bin": fmt.Errorf("GetObject: %w", statusError(403)),
		"gone.bin":   rfs.ErrorObjectNotFound,
		"broken.bin": errors.New("connection reset by peer"),
	})
	f.aliases = map[string]string{"a/../b": "top", "x/./y": "top", "a//b": "top", "../up": "top"}
	root := t.TempDir()
	dest := filepath.Join(root, "data")
	res, err := Copy(context.Background(), f, dest, filepath.Join(root, "manifest"), Options{Workers: 4}, &Progress{})
	if err != nil {
		t.Fatalf("Copy = %v, want the copy to complete without the bad keys", err)
	}
	for _, k := range []string{"ok/a.txt", "ok/b.txt", "top", "dup/child"} {
		if got, err := os.ReadFile(filepath.Join(dest, k)); err != nil || string(got) != string(objs[k]) {
			t.Errorf("%s in the copy: %q %v", k, got, err)
		}
	}
	var files []string
	_ = filepath.WalkDir(dest, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p[len(dest)+1:])
		}
		return nil
	})
	if len(files) != 4 {
		t.Errorf("copy holds %v, want exactly the 4 good files", files)
	}
	reasons := map[string]string{}
	for _, s := range res.Skipped {
		reasons[s.Key] = s.Reason
	}
	for key, want := range map[string]string{
		"a/../b": `".." segment`, "x/./y": `"." or ".."`, "a//b": "empty path segment", "dir/" + long: "name too long",
		"dup": "also a directory", "denied.bin": "refused", "gone.bin": "refused", "broken.bin": "download failed",
	} {
		if !strings.Contains(reasons[key], want) {
			t.Errorf("key %q skipped for %q, want a reason with %q", key, reasons[key], want)
		}
	}
	// "../up" escapes the root: rclone's listing drops it before the copier.
	if res.SkippedCount != 8 || res.Files != 4 || res.Downloaded != 4 {
		t.Errorf("result %+v, want 8 skipped, 4 files", res)
	}
	if n := f.opened("broken.bin"); n != fetchAttempts {
		t.Errorf("a failing GET was tried %d times, want %d", n, fetchAttempts)
	}
	if n := f.opened("denied.bin"); n != 1 {
		t.Errorf("a refused GET was tried %d times, want 1 (the store's answer is final)", n)
	}
	// The next copy fetches nothing new and leaves out the same keys.
	res, err = Copy(context.Background(), f, dest, filepath.Join(root, "manifest"), Options{Workers: 4}, &Progress{})
	if err != nil || res.Downloaded != 0 || res.SkippedCount != 8 {
		t.Fatalf("second copy: %+v %v, want nothing downloaded and the same 8 skipped", res, err)
	}
}

// TestCopySkippedListIsBounded: a bucket of many keys that cannot be files
// is counted in full and only the first few are named.
func TestCopySkippedListIsBounded(t *testing.T) {
	f := newFaultyFs(memFs(t, map[string][]byte{"good": []byte("g")}), nil)
	f.aliases = map[string]string{}
	for i := 0; i < 500; i++ {
		f.aliases[fmt.Sprintf("bad%03d/../x", i)] = "good"
	}
	root := t.TempDir()
	res, err := Copy(context.Background(), f, filepath.Join(root, "data"), filepath.Join(root, "manifest"), Options{}, &Progress{})
	if err != nil || res.SkippedCount != 500 || len(res.Skipped) != maxSkipExamples || res.Files != 1 {
		t.Fatalf("Copy = %+v (%d named) %v, want 500 skipped, %d named, 1 file", res.SkippedCount, len(res.Skipped), err, maxSkipExamples)
	}
}

// TestCopyStopsWhenTheStoreIsDown: when every GET fails without an answer
// the copy does not leave out every object: it stops as Unavailable (a
// retry resumes), after a bounded number of failures.
func TestCopyStopsWhenTheStoreIsDown(t *testing.T) {
	objs := map[string][]byte{}
	failures := map[string]error{}
	for i := 0; i < 100; i++ {
		k := fmt.Sprintf("f%03d", i)
		objs[k] = []byte(k)
		failures[k] = errors.New("dial tcp: connection refused")
	}
	f := newFaultyFs(memFs(t, objs), failures)
	root := t.TempDir()
	_, err := Copy(context.Background(), f, filepath.Join(root, "data"), filepath.Join(root, "manifest"), Options{Workers: 4}, &Progress{})
	if !errors.Is(err, fault.Unavailable) || !strings.Contains(err.Error(), "in a row failed") {
		t.Fatalf("Copy with the store down = %v, want fault.Unavailable", err)
	}
}

// TestCopyListingErrors: a missing bucket is final (NotFound), refused
// credentials are final (Denied), other listing failures are retryable.
func TestCopyListingErrors(t *testing.T) {
	for _, c := range []struct {
		err  error
		want error
	}{
		{rfs.ErrorDirNotFound, fault.NotFound},
		{fmt.Errorf("ListObjectsV2: %w", statusError(403)), fault.Denied},
		{fmt.Errorf("ListObjectsV2: %w", statusError(503)), fault.Unavailable},
		{errors.New("dial tcp: connection refused"), fault.Unavailable},
	} {
		f := newFaultyFs(memFs(t, nil), nil)
		f.ft.ListR = func(context.Context, string, rfs.ListRCallback) error { return c.err }
		root := t.TempDir()
		_, err := Copy(context.Background(), f, filepath.Join(root, "data"), filepath.Join(root, "manifest"), Options{}, &Progress{})
		if !errors.Is(err, c.want) {
			t.Errorf("listing error %v: Copy = %v, want %v", c.err, err, c.want)
		}
	}
}

// TestComparePathsIsWalkOrder: the plan's order is the order
// filepath.WalkDir visits a tree in, with every "a/..." right after "a".
func TestComparePathsIsWalkOrder(t *testing.T) {
	dir := t.TempDir()
	paths := []string{"a", "a!", "a-b", "a.txt", "a0", "b/c", "b/c!", "b-/x", "b/c/d"}
	for _, p := range paths {
		if p == "b/c" {
			continue // a directory here
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var walked []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if p != dir {
			walked = append(walked, p[len(dir)+1:])
		}
		return err
	})
	for i := 1; i < len(walked); i++ {
		if comparePaths(walked[i-1], walked[i]) >= 0 {
			t.Fatalf("WalkDir visits %q before %q, comparePaths disagrees (walk: %v)", walked[i-1], walked[i], walked)
		}
	}
	if comparePaths("a", "a/b") >= 0 || comparePaths("a/b", "a-b") >= 0 || comparePaths("a/z", "a0") >= 0 {
		t.Fatal(`want "a" < "a/b" < "a-b"`)
	}
}

// TestCopyOneRangeFails: a large object one of whose ranges the store
// refuses is left out whole and the other objects are copied. Every
// range's task still runs (those after the failure without a GET): only
// the last to finish closes the part file, removes it and counts the
// object left out.
func TestCopyOneRangeFails(t *testing.T) {
	big := strings.Repeat("b", 4096)
	f := newFaultyFs(memFs(t, map[string][]byte{"big.bin": []byte(big), "small": []byte("s")}), nil)
	f.rangeFailures = map[string]int64{"big.bin": 2048}
	root := t.TempDir()
	dest := filepath.Join(root, "data")
	res, err := Copy(context.Background(), f, dest, filepath.Join(root, "manifest"), Options{Workers: 2, ChunkSize: 1024}, &Progress{})
	if err != nil {
		t.Fatalf("Copy = %v, want the copy to complete without big.bin", err)
	}
	if res.SkippedCount != 1 || len(res.Skipped) != 1 || res.Skipped[0].Key != "big.bin" || !strings.Contains(res.Skipped[0].Reason, "refused") {
		t.Fatalf("skipped %+v, want big.bin refused", res.Skipped)
	}
	entries, err := os.ReadDir(dest)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 1 || names[0] != "small" {
		t.Errorf("copy holds %v, want only small (no big.bin, no part file)", names)
	}
}

// TestFinishRefusesADirectory: a directory at a download's final name is
// not replaced, and the error is one that leaves the key out.
func TestFinishRefusesADirectory(t *testing.T) {
	dir := t.TempDir()
	final := filepath.Join(dir, "name")
	if err := os.MkdirAll(filepath.Join(final, "inside"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(partPath(final), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &run{p: &Progress{}}
	err := r.finish(&file{final: final, rec: record{Path: "name", Size: 1}}, 0)
	if err == nil || !localSkip(err) {
		t.Fatalf("finish over a directory = %v, want an error that skips the key", err)
	}
	if st, err := os.Stat(filepath.Join(final, "inside")); err != nil || !st.IsDir() {
		t.Errorf("the directory was replaced: %v", err)
	}
}
