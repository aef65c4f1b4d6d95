package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bucket-csi/bucket-csi/internal/localenv"
	"github.com/bucket-csi/bucket-csi/pkg/cli"
	"github.com/bucket-csi/bucket-csi/pkg/store"
	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// storageCLI runs `bucket-csi storage` against s3 and returns stdout,
// stderr and the exit code.
func storageCLI(t *testing.T, s3 *testenv.S3, args ...string) (string, string, int) {
	t.Helper()
	cmd := storageCmd(t, s3, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func storageCmd(t *testing.T, s3 *testenv.S3, args ...string) *exec.Cmd {
	t.Helper()
	bin, err := localenv.Binary("BUCKET_CSI_BIN", "bucket-csi")
	if err != nil {
		testenv.Missing(t, "%v", err)
	}
	secrets := filepath.Join(t.TempDir(), "secrets.json")
	data, _ := json.Marshal(map[string]map[string]string{"s3": s3.Secrets()})
	if err := os.WriteFile(secrets, data, 0o600); err != nil {
		t.Fatal(err)
	}
	all := append([]string{"storage"}, args...)
	all = append(all, "--stores", "s3", "--s3-endpoint", s3.Endpoint, "--s3-path-style", "--secrets", secrets, "--ownership-key-file", s3.KeyFile)
	cmd := exec.Command(bin, all...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	return cmd
}

func bucketKeys(t *testing.T, st store.Store, b string) []string {
	t.Helper()
	var out []string
	for _, k := range keys(t, st, b) {
		if !strings.HasPrefix(k, ".bucket-csi/") {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// TestStorageCLI: ls lists exactly the driver's buckets with their
// creators and status; delete refuses foreign and in-use buckets and
// deletes the driver's; upload is incremental and skips symlinks.
func TestStorageCLI(t *testing.T) {
	s3, _, c := startAll(t, "--services", "controller")
	ctx := context.Background()
	st := s3.Store(t)
	if err := st.CreateBucket(ctx, "not-ours"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Controller.CreateVolume(ctx, createReq("pvc-cli", map[string]string{"name": "team-outputs", "csi.storage.k8s.io/pvc/name": "outputs", "csi.storage.k8s.io/pvc/namespace": "ml"}, s3.Secrets())); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	for i := 0; i < 20; i++ {
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("f%02d.txt", i)), []byte(strings.Repeat("x", i+1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := storageCLI(t, s3, "upload", "--name", "my-dataset", src)
	if code != 0 || !strings.Contains(out, "Uploaded 20 files") || !strings.Contains(out, "kind: StorageClass") {
		t.Fatalf("first upload (exit %d):\n%s\n%s", code, out, errOut)
	}
	if got := bucketKeys(t, st, "my-dataset"); len(got) != 20 || got[0] != "f00.txt" {
		t.Fatalf("bucket after upload: %v (the symlink must not be uploaded)", got)
	}
	if err := os.WriteFile(filepath.Join(src, "f07.txt"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = storageCLI(t, s3, "upload", "--name", "my-dataset", src)
	if code != 0 || !strings.Contains(out, "Uploaded 1 files") {
		t.Fatalf("second upload should send exactly the changed file (exit %d):\n%s\n%s", code, out, errOut)
	}
	// ls: exactly the two marked buckets, with creators and status.
	out, errOut, code = storageCLI(t, s3, "ls", "-o", "json")
	var entries []cli.Entry
	if code != 0 || json.Unmarshal([]byte(out), &entries) != nil {
		t.Fatalf("ls -o json (exit %d):\n%s\n%s", code, out, errOut)
	}
	got := map[string]cli.Entry{}
	for _, e := range entries {
		got[e.Name] = e
	}
	if len(got) != 2 || got["team-outputs"].CreatedBy != "pvc ml/outputs" || got["team-outputs"].Status != "IN USE (1 volumes)" ||
		!strings.HasPrefix(got["my-dataset"].CreatedBy, "cli bucket-csi storage upload") || got["my-dataset"].Status != "READY" {
		t.Fatalf("ls entries: %+v", entries)
	}
	if time.Since(got["my-dataset"].Created) > time.Minute {
		t.Fatalf("creation time %v", got["my-dataset"].Created)
	}
	out, _, _ = storageCLI(t, s3, "ls")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") || !strings.Contains(out, "just now") || !strings.Contains(out, "S3") {
		t.Fatalf("ls table:\n%s", out)
	}
	// delete: foreign refused, in-use refused, ours deleted.
	_, errOut, code = storageCLI(t, s3, "delete", "not-ours")
	if code == 0 || !strings.Contains(errOut, "not created by bucket-csi") || st.HeadBucket(ctx, "not-ours") != nil {
		t.Fatalf("delete of a foreign bucket: exit %d, %s", code, errOut)
	}
	_, errOut, code = storageCLI(t, s3, "delete", "team-outputs")
	if code == 0 || !strings.Contains(errOut, "volumes still use it") || st.HeadBucket(ctx, "team-outputs") != nil {
		t.Fatalf("delete of an in-use bucket: exit %d, %s", code, errOut)
	}
	_, errOut, code = storageCLI(t, s3, "delete", "--all")
	if code == 0 || !strings.Contains(errOut, "not confirmed") {
		t.Fatalf("delete --all without a terminal or -y must refuse: exit %d, %s", code, errOut)
	}
	out, errOut, code = storageCLI(t, s3, "delete", "my-dataset")
	if code != 0 || st.HeadBucket(ctx, "my-dataset") == nil {
		t.Fatalf("delete of our bucket: exit %d\n%s\n%s", code, out, errOut)
	}
}

// TestStorageUploadResumes: an upload killed midway, run again, leaves the
// bucket holding exactly the local files, each once and intact, and the
// second run sends only what the first did not.
func TestStorageUploadResumes(t *testing.T) {
	s3 := testenv.StartS3(t)
	src := t.TempDir()
	const n = 400
	for i := 0; i < n; i++ {
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("part-%03d.bin", i)), bytes.Repeat([]byte{byte(i)}, 64<<10), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := storageCmd(t, s3, "upload", "--name", "resumed", src)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	st := s3.Store(t)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if st.HeadBucket(context.Background(), "resumed") == nil && len(bucketKeys(t, st, "resumed")) > 20 {
			break
		}
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	first := len(bucketKeys(t, st, "resumed"))
	out, errOut, code := storageCLI(t, s3, "upload", "--name", "resumed", src)
	if code != 0 {
		t.Fatalf("resumed upload (exit %d):\n%s\n%s", code, out, errOut)
	}
	keys := bucketKeys(t, st, "resumed")
	if len(keys) != n {
		t.Fatalf("bucket holds %d objects, want exactly %d", len(keys), n)
	}
	var sent int
	fmt.Sscanf(out[strings.Index(out, "Uploaded"):], "Uploaded %d files", &sent)
	if first > 0 && first < n && sent > n-first+8 {
		t.Fatalf("resume re-sent %d files though %d of %d were already uploaded", sent, first, n)
	}
	got, err := s3.ReadObject(t, "resumed", "part-123.bin")
	if err != nil || !bytes.Equal(got, bytes.Repeat([]byte{123}, 64<<10)) {
		t.Fatalf("object after resume differs: %v", err)
	}
	t.Logf("killed after %d of %d objects; the second run sent %d", first, n, sent)
}

// TestStorageUploadSeveralPaths: of several paths, a file lands at the
// bucket's root under its name (a path that is a symlink with the bytes
// it names) and a directory's files under the directory's name; two
// paths of one name are refused before anything is sent; a directory
// uploaded to the root never sends its .bucket-csi over the driver's
// mark.
func TestStorageUploadSeveralPaths(t *testing.T) {
	s3 := testenv.StartS3(t)
	src := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "images", "train"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"notes.txt": "n", "images/a.png": "a", "images/train/b.png": "b"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("notes.txt", filepath.Join(src, "alias.txt")); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := storageCLI(t, s3, "upload", "--name", "several", filepath.Join(src, "notes.txt"), filepath.Join(src, "images"), filepath.Join(src, "alias.txt"))
	if code != 0 {
		t.Fatalf("upload (exit %d):\n%s\n%s", code, out, errOut)
	}
	st := s3.Store(t)
	if got, want := bucketKeys(t, st, "several"), []string{"alias.txt", "images/a.png", "images/train/b.png", "notes.txt"}; !slices.Equal(got, want) {
		t.Fatalf("bucket holds %q, want %q", got, want)
	}
	if got, err := s3.ReadObject(t, "several", "alias.txt"); err != nil || string(got) != "n" {
		t.Fatalf("the symlink's object: %q, %v; want the file it names", got, err)
	}
	// A directory holding a .bucket-csi of its own (a copy of another
	// bucket, say), uploaded to the root: the mark stays the driver's.
	meta := filepath.Join(src, "images", ".bucket-csi")
	if err := os.MkdirAll(meta, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(meta, "owner.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := storageCLI(t, s3, "upload", "--name", "several", filepath.Join(src, "images")); code != 0 {
		t.Fatalf("upload of a directory holding .bucket-csi (exit %d):\n%s\n%s", code, out, errOut)
	}
	out, errOut, code = storageCLI(t, s3, "ls", "-o", "json")
	if code != 0 || !strings.Contains(out, `"several"`) {
		t.Fatalf("the bucket after a directory holding .bucket-csi was uploaded to its root is no longer listed as the driver's (exit %d):\n%s\n%s", code, out, errOut)
	}
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "notes.txt"), []byte("other"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = storageCLI(t, s3, "upload", "--name", "clash", filepath.Join(src, "notes.txt"), filepath.Join(other, "notes.txt"))
	if code == 0 || !strings.Contains(errOut, "would both be uploaded as \"notes.txt\"") || st.HeadBucket(context.Background(), "clash") == nil {
		t.Fatalf("two paths of one name: exit %d, %s (and no bucket made)", code, errOut)
	}
}

// TestStorageCLIConfigFile: a config file sets the same flags (store
// endpoint, credentials file); an unknown setting is refused.
func TestStorageCLIConfigFile(t *testing.T) {
	s3 := testenv.StartS3(t)
	bin, err := localenv.Binary("BUCKET_CSI_BIN", "bucket-csi")
	if err != nil {
		testenv.Missing(t, "%v", err)
	}
	dir := t.TempDir()
	secrets := filepath.Join(dir, "secrets.json")
	data, _ := json.Marshal(map[string]map[string]string{"s3": s3.Secrets()})
	if err := os.WriteFile(secrets, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config.json")
	data, _ = json.Marshal(map[string]any{"stores": "s3", "s3-endpoint": s3.Endpoint, "s3-path-style": true, "secrets": secrets, "ownership-key-file": s3.KeyFile})
	if err := os.WriteFile(cfg, data, 0o600); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "a.txt"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		cmd := exec.Command(bin, append([]string{"storage"}, args...)...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run("upload", "--config", cfg, "--name", "from-config", src); err != nil || !strings.Contains(out, "Uploaded 1 files") {
		t.Fatalf("upload with --config: %v\n%s", err, out)
	}
	if out, err := run("ls", "--config", cfg); err != nil || !strings.Contains(out, "from-config") {
		t.Fatalf("ls with --config: %v\n%s", err, out)
	}
	bad := filepath.Join(dir, "bad.json")
	_ = os.WriteFile(bad, []byte(`{"s3-endpont": "x"}`), 0o600)
	if out, err := run("ls", "--config", bad); err == nil || !strings.Contains(out, "unknown setting") {
		t.Fatalf("a misspelt setting was accepted: %v\n%s", err, out)
	}
}
