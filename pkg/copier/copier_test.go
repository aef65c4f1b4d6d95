package copier

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	_ "github.com/rclone/rclone/backend/memory"
	rfs "github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/fshttp"
	"github.com/rclone/rclone/fs/object"
	"github.com/rclone/rclone/fs/operations"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
)

// memFs returns a fresh rclone in-memory remote (a real backend that
// stores any key, hostile ones included) holding objects.
func memFs(t testing.TB, objects map[string][]byte) rfs.Fs {
	t.Helper()
	ctx := context.Background()
	f, err := rfs.NewFs(ctx, ":memory:"+strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = operations.Purge(ctx, f, "") })
	for k, v := range objects {
		put(t, f, k, v)
	}
	return f
}

func put(t testing.TB, f rfs.Fs, key string, data []byte) {
	t.Helper()
	info := object.NewStaticObjectInfo(key, time.Now(), int64(len(data)), true, nil, f)
	if _, err := f.Put(context.Background(), bytes.NewReader(data), info); err != nil {
		t.Fatalf("put %q: %v", key, err)
	}
}

func random(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCopyHostileKeysStayInside(t *testing.T) {
	objs := map[string][]byte{
		"ok/a.txt": []byte("a"), "../escape.txt": []byte("x"), "a/../../b": []byte("x"),
		"/abs": []byte("x"), "dup": []byte("file"), "dup/child": []byte("c"), "./dot": []byte("x"),
		strings.Repeat("n", 300): []byte("x"), ".bucket-csi/owner.json": []byte("{}"),
	}
	f := memFs(t, objs)
	root := t.TempDir()
	dest := filepath.Join(root, "data")
	res, err := Copy(context.Background(), f, dest, filepath.Join(root, "manifest"), Options{HideMetaDir: true}, &Progress{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			got = append(got, rel)
		}
		return nil
	})
	// rclone itself cleans "/abs" and "./dot" to "abs" and "dot" when they
	// are written; what matters is that nothing lands outside the copy.
	for _, g := range got {
		if g != "manifest" && !strings.HasPrefix(g, "data/") {
			t.Fatalf("file outside the copy: %s (all: %v)", g, got)
		}
		if strings.Contains(g, "escape") || strings.HasPrefix(g, "data/.bucket-csi") || g == "data/dup" {
			t.Fatalf("file that must not be copied: %s", g)
		}
	}
	for _, w := range []string{"data/ok/a.txt", "data/dup/child"} {
		if !slices.Contains(got, w) {
			t.Fatalf("%s missing from the copy: %v", w, got)
		}
	}
	skipped := map[string]bool{}
	for _, s := range res.Skipped {
		skipped[s.Key] = true
	}
	for _, k := range []string{"dup", strings.Repeat("n", 300)} {
		if !skipped[k] {
			t.Errorf("key %q not reported as skipped: %+v", k, res.Skipped)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "escape.txt")); err == nil {
		t.Fatal("a key escaped the copy")
	}
}

// A pod may leave symlinks at any name in a kept copy; the next copy
// replaces them and never writes through them.
func TestCopyReplacesSymlinksWithoutFollowing(t *testing.T) {
	small, large := []byte("from the bucket"), random(t, 5000)
	f := memFs(t, map[string][]byte{"a.txt": small, "big.bin": large})
	root := t.TempDir()
	dest, outside := filepath.Join(root, "data"), filepath.Join(root, "outside")
	if err := os.MkdirAll(dest, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a.txt", "big.bin", filepath.Base(partPath("a.txt")), filepath.Base(partPath("big.bin"))} {
		target := outside + "-" + name
		if err := os.WriteFile(target, []byte("host file"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(dest, name)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Copy(context.Background(), f, dest, filepath.Join(root, "manifest"), Options{ChunkSize: 1024}, &Progress{}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]byte{"a.txt": small, "big.bin": large} {
		st, err := os.Lstat(filepath.Join(dest, name))
		if err != nil || !st.Mode().IsRegular() {
			t.Fatalf("%s is not a regular file after the copy: %v %v", name, st, err)
		}
		if got, _ := os.ReadFile(filepath.Join(dest, name)); !bytes.Equal(got, want) {
			t.Fatalf("%s does not hold the object", name)
		}
	}
	targets, _ := filepath.Glob(outside + "-*")
	for _, target := range targets {
		if got, _ := os.ReadFile(target); string(got) != "host file" {
			t.Fatalf("the copy wrote through a symlink into %s: %q", target, got)
		}
	}
	if len(targets) != 4 {
		t.Fatalf("%d files outside the copy, want the 4 link targets untouched", len(targets))
	}
}

func TestCopyIncrementalAndLarge(t *testing.T) {
	big := random(t, 5<<20+3)
	f := memFs(t, map[string][]byte{"big.bin": big, "s/1": []byte("one"), "s/2": []byte("two"), "empty": nil})
	root := t.TempDir()
	dest, man := filepath.Join(root, "data"), filepath.Join(root, "manifest")
	opt := Options{ChunkSize: 1 << 20, Workers: 4}
	res, err := Copy(context.Background(), f, dest, man, opt, &Progress{})
	if err != nil || res.Downloaded != 4 || res.Files != 4 {
		t.Fatalf("first copy: %+v %v", res, err)
	}
	if got, _ := os.ReadFile(filepath.Join(dest, "big.bin")); !bytes.Equal(got, big) {
		t.Fatal("large object differs after a ranged download")
	}
	res, err = Copy(context.Background(), f, dest, man, opt, &Progress{})
	if err != nil || res.Downloaded != 0 {
		t.Fatalf("unchanged copy downloaded %d files: %v", res.Downloaded, err)
	}
	put(t, f, "s/2", []byte("two, changed"))
	if err := os.WriteFile(filepath.Join(dest, "s/1"), []byte("edited by a pod"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dest, "stray"), []byte("pod output"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err = Copy(context.Background(), f, dest, man, opt, &Progress{})
	if err != nil || res.Downloaded != 2 {
		t.Fatalf("want 2 downloads (one changed object, one locally edited file), got %+v %v", res, err)
	}
	if got, _ := os.ReadFile(filepath.Join(dest, "s/1")); string(got) != "one" {
		t.Fatalf("local edit not replaced: %q", got)
	}
	if _, err := os.Stat(filepath.Join(dest, "stray")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a file not in the bucket survived the re-copy")
	}
}

func TestCopyRefusesWhenFull(t *testing.T) {
	f := memFs(t, map[string][]byte{"x": []byte("x")})
	root := t.TempDir()
	if err := FreeSpace(context.Background(), root, 0, 1<<62, 1); !errors.Is(err, fault.Exhausted) || !strings.Contains(err.Error(), "bytes are free") {
		t.Fatalf("FreeSpace = %v, want fault.Exhausted with the figures", err)
	}
	if _, err := Copy(context.Background(), f, filepath.Join(root, "d"), filepath.Join(root, "m"), Options{}, &Progress{}); err != nil {
		t.Fatal(err)
	}
}

func TestLocalPath(t *testing.T) {
	for key, ok := range map[string]bool{
		"a/b.txt": true, "a b/c": true, "../x": false, "a/./b": false, "a//b": false, "/x": false,
		"a/": false, "": false, "x\x00y": false, strings.Repeat("a", 256): false,
		"a/．．/b": false, "．/x": false, "a/．．．": true, "a/...": true,
		strings.Repeat("a", 255): true, "x.bcsi-part": true, ".bcsi-part-0a1b": false, "a/.bcsi-part-0a1b/y": false,
	} {
		if _, why := localPath(key); (why == "") != ok {
			t.Errorf("localPath(%q): reason %q, want ok=%v", key, why, ok)
		}
	}
}

// A filesystem opened with Connections keeps an idle connection for every
// worker: the limit is read from the transport rclone really builds.
func TestConnectionsKeepOnePerWorker(t *testing.T) {
	for _, workers := range []int{0, 1, 8, 32, 100} {
		ctx := Connections(context.Background(), Options{Workers: workers})
		var idle int
		fshttp.NewTransportCustom(ctx, func(tr *http.Transport) { idle = tr.MaxIdleConnsPerHost })
		want := workers
		if want == 0 {
			want = DefaultWorkers
		}
		if idle < want {
			t.Errorf("%d workers: rclone keeps %d idle connections per host", workers, idle)
		}
	}
	// The caller's context keeps its own settings.
	before := rfs.GetConfig(context.Background()).Transfers
	Connections(context.Background(), Options{Workers: 100})
	if after := rfs.GetConfig(context.Background()).Transfers; after != before {
		t.Errorf("the global config changed: transfers %d, was %d", after, before)
	}
}

// TestCopyDownloadFilesTakeNoKeysName: a download file is named apart from
// every key: an object named as the download file of another would have
// replaced that file's bytes (it is refused and listed as skipped), one
// named as the old suffix form is an ordinary file, and a name of 255
// bytes, with no room for a suffix, is copied, small or in ranges.
func TestCopyDownloadFilesTakeNoKeysName(t *testing.T) {
	long := strings.Repeat("n", 255)
	objects := map[string][]byte{
		"x":                          []byte("the object x"),
		"x.bcsi-part":                []byte("an ordinary object"),
		filepath.Base(partPath("x")): []byte("planted over x"),
		long:                         []byte("a long name"),
		"d/" + long:                  random(t, 5000),
	}
	root := t.TempDir()
	dest := filepath.Join(root, "data")
	res, err := Copy(context.Background(), memFs(t, objects), dest, filepath.Join(root, "manifest"), Options{ChunkSize: 1024}, &Progress{})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range objects {
		got, err := os.ReadFile(filepath.Join(dest, name))
		if name == filepath.Base(partPath("x")) {
			if err == nil {
				t.Errorf("the object named as x's download file was copied")
			}
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%.20s holds %.20q (%v), want %.20q", name, got, err, want)
		}
	}
	if res.SkippedCount != 1 || len(res.Skipped) != 1 || res.Skipped[0].Key != filepath.Base(partPath("x")) {
		t.Errorf("skipped %d: %+v, want the one named as a download file", res.SkippedCount, res.Skipped)
	}
}

// TestCopyMakesOnlyOwnerModes: what a copy makes, its directories and its
// files, the root included, is its owner's alone (0700, 0600) until the
// stage presents it with the volume's modes.
func TestCopyMakesOnlyOwnerModes(t *testing.T) {
	f := memFs(t, map[string][]byte{"top.txt": []byte("t"), "a/b/deep.txt": []byte("d"), "a/side.txt": []byte("s")})
	root := t.TempDir()
	dest := filepath.Join(root, "data")
	if _, err := Copy(context.Background(), f, dest, filepath.Join(root, "manifest"), Options{}, &Progress{}); err != nil {
		t.Fatal(err)
	}
	seen := 0
	err := filepath.WalkDir(dest, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		st, err := d.Info()
		if err != nil {
			return err
		}
		want := os.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, st.Mode().Perm(), want)
		}
		seen++
		return nil
	})
	if err != nil || seen != 6 {
		t.Fatalf("walked %d entries of the copy (want 6): %v", seen, err)
	}
}
