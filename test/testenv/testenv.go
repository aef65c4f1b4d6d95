// Package testenv adapts internal/localenv to tests: it starts the real
// parts (versitygw, the bucket-csi binary), stops them when the test ends,
// and turns missing requirements into failures in CI and skips elsewhere,
// so CI can never pass by skipping.
package testenv

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bucket-csi/bucket-csi/internal/localenv"
	"github.com/bucket-csi/bucket-csi/pkg/mounter"
	"github.com/bucket-csi/bucket-csi/pkg/nodestate"
	"github.com/bucket-csi/bucket-csi/pkg/redact"
	"github.com/bucket-csi/bucket-csi/pkg/stage"
	"github.com/bucket-csi/bucket-csi/pkg/store"
	"github.com/bucket-csi/bucket-csi/pkg/store/s3store"
)

// Missing reports a missing requirement: fatal in CI, a skip elsewhere.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("required for this test and missing in CI: %s", msg)
	}
	t.Skipf("skipping outside CI: %s", msg)
}

// RequireFUSE checks for root and a usable /dev/fuse.
func RequireFUSE(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "root (FUSE and bind mounts)")
	}
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		Missing(t, "/dev/fuse: %v", err)
	}
	f.Close()
}

// S3 is a versitygw server for one test, with the ownership key every
// driver and storage CLI of the test uses with it.
type S3 struct {
	*localenv.S3
	// KeyFile is the ownership key file (0600).
	KeyFile string
}

// StartS3 starts versitygw in a temporary directory for the test.
func StartS3(t testing.TB) *S3 { return StartS3Region(t, "") }

// StartS3Region starts versitygw expecting requests signed for region.
func StartS3Region(t testing.TB, region string) *S3 {
	t.Helper()
	if _, err := localenv.Binary("VERSITYGW_BIN", "versitygw"); err != nil {
		Missing(t, "%v", err)
	}
	// make bench pins the server to one CPU (BENCH_SERVER_CPU) and runs
	// the clients on another.
	s, err := localenv.StartS3(t.TempDir(), os.Getenv("BENCH_SERVER_CPU"), region)
	if err != nil {
		t.Fatal(err)
	}
	return forTest(t, s)
}

// forTest stops s when the test ends and gives it an ownership key.
func forTest(t testing.TB, s *localenv.S3) *S3 {
	t.Helper()
	t.Cleanup(s.Stop)
	key, err := localenv.WriteKeyFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &S3{S3: s, KeyFile: key}
}

// StartS3Versioning starts versitygw with object versioning available.
func StartS3Versioning(t testing.TB) *S3 {
	t.Helper()
	if _, err := localenv.Binary("VERSITYGW_BIN", "versitygw"); err != nil {
		Missing(t, "%v", err)
	}
	s, err := localenv.StartS3Versioning(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return forTest(t, s)
}

// StartS3Accounts starts versitygw with accounts (access key -> secret)
// beside its root account, each seeing only its own buckets in
// ListBuckets (localenv.StartS3Accounts).
func StartS3Accounts(t testing.TB, accounts map[string]string) *S3 {
	t.Helper()
	if _, err := localenv.Binary("VERSITYGW_BIN", "versitygw"); err != nil {
		Missing(t, "%v", err)
	}
	s, err := localenv.StartS3Accounts(t.TempDir(), accounts)
	if err != nil {
		t.Fatal(err)
	}
	return forTest(t, s)
}

// Secrets returns the CSI secret that reaches this server.
func (s *S3) Secrets() map[string]string {
	return map[string]string{s3store.SecretAccessKeyID: s.AccessKey, s3store.SecretSecretAccessKey: s.SecretKey}
}

// Store returns a store.Store of this server built by our s3store code.
func (s *S3) Store(t testing.TB) store.Store {
	t.Helper()
	st, err := s3store.Open(s3store.Config{Endpoint: s.Endpoint, PathStyle: true}, s.Secrets())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// Driver is a bucket-csi binary for one test.
type Driver struct{ *localenv.Driver }

// StartDriver runs the driver against s3 until the test ends; every mount
// it left below its directory is unmounted then, and its log is printed if
// the test failed. The driver uses s3.KeyFile unless args name an
// --ownership-key-file ("--ownership-key-file=" for none); without
// s3.KeyFile it gets a new key of its own.
func StartDriver(t testing.TB, s3 *S3, args ...string) *Driver {
	t.Helper()
	if _, err := localenv.Binary("BUCKET_CSI_BIN", "bucket-csi"); err != nil {
		Missing(t, "%v", err)
	}
	if s3.KeyFile != "" && !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--ownership-key-file") }) {
		args = append([]string{"--ownership-key-file", s3.KeyFile}, args...)
	}
	d, err := localenv.StartDriver(s3.S3, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("driver log:\n%s", d.Log.String())
			logs, _ := filepath.Glob(filepath.Join(d.StateDir, "volumes", "*", "mounter.log"))
			for _, l := range logs {
				data, _ := os.ReadFile(l)
				t.Logf("%s:\n%s", l, data)
			}
		}
		// Kept copies are guarded by an immutable directory.
		if err := stage.ReleaseGuards(filepath.Join(d.StateDir, "copies")); err != nil {
			t.Errorf("clearing the copies' guards: %v", err)
		}
		d.Stop()
	})
	return &Driver{d}
}

// TempDir returns a new directory below the driver's directory for staging
// and target paths: it is unmounted before it is removed, so no cleanup
// ever deletes files through a live mount.
func (d *Driver) TempDir(t testing.TB) string {
	t.Helper()
	p, err := os.MkdirTemp(d.Dir, "work-")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Staged returns the node-state records of the volumes the driver has staged.
func (d *Driver) Staged(t testing.TB) []*nodestate.Volume {
	t.Helper()
	all, err := nodestate.Dir{Root: d.StateDir}.All()
	if err != nil {
		t.Fatal(err)
	}
	return all
}

// SecretForms are the ways a secret may be printed: itself, each line of
// it, URL query- and path-escaped, Go- and JSON-quoted, base64.
func SecretForms(secret string) []string {
	js, _ := json.Marshal(secret)
	out := []string{secret, url.QueryEscape(secret), url.PathEscape(secret),
		strings.Trim(strconv.Quote(secret), `"`), strings.Trim(string(js), `"`),
		base64.StdEncoding.EncodeToString([]byte(secret))}
	for _, l := range strings.Split(secret, "\n") {
		if l = strings.TrimSpace(l); len(l) >= redact.MinLen {
			out = append(out, l)
		}
	}
	return out
}

// containsSecret reports which form of secret text holds ("" if none).
func containsSecret(text, secret string) string {
	for _, f := range SecretForms(secret) {
		if strings.Contains(text, f) {
			return f
		}
	}
	return ""
}

// AssertNoSecret fails if secret, in any of its SecretForms, appears in
// the driver's log, in any FUSE server's command line or environment, or
// in any volume's log file (staged or not).
func (d *Driver) AssertNoSecret(t testing.TB, secret string) {
	t.Helper()
	if f := containsSecret(d.Log.String(), secret); f != "" {
		t.Errorf("the driver log contains a secret (as %q)", f)
	}
	for _, v := range d.Staged(t) {
		if v.Server.Pid == 0 {
			continue // no FUSE server (COPY, or a stage that failed)
		}
		pid := strconv.Itoa(v.Server.Pid)
		for _, f := range []string{"/proc/" + pid + "/cmdline", "/proc/" + pid + "/environ"} {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Errorf("reading %s: %v", f, err)
				continue
			}
			if containsSecret(string(data), secret) != "" {
				t.Errorf("%s of the FUSE server contains a secret", f)
			}
		}
	}
	logs, _ := filepath.Glob(filepath.Join(d.StateDir, "volumes", "*", "*.log"))
	for _, l := range logs {
		data, _ := os.ReadFile(l)
		if f := containsSecret(string(data), secret); f != "" {
			t.Errorf("%s contains a secret (as %q)", l, f)
		}
		if st, err := os.Stat(l); err == nil && st.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is readable by others: %v", l, st.Mode())
		}
	}
}

// StartGCS starts fake-gcs-server for the test.
func StartGCS(t testing.TB) *localenv.Server {
	t.Helper()
	if _, err := localenv.Binary("FAKE_GCS_BIN", "fake-gcs-server"); err != nil {
		Missing(t, "%v", err)
	}
	s, err := localenv.StartGCS("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// StartAzurite starts Azurite's blob service for the test.
func StartAzurite(t testing.TB) *localenv.Server {
	t.Helper()
	if _, err := localenv.Binary("AZURITE_BIN", "azurite-blob"); err != nil {
		Missing(t, "%v", err)
	}
	s, err := localenv.StartAzurite()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Emulators are the GCS and Azure emulators and the driver flags that
// reach them.
type Emulators struct {
	GCS, Azure *localenv.Server
	// Args point the driver at both emulators.
	Args []string
}

// StartEmulators starts fake-gcs-server and Azurite for the test.
func StartEmulators(t testing.TB) Emulators {
	t.Helper()
	gcs, az := StartGCS(t), StartAzurite(t)
	return Emulators{GCS: gcs, Azure: az, Args: []string{
		"--gcs-endpoint", gcs.Endpoint, "--gcs-project", localenv.GCSProject,
		"--azure-account", localenv.AzuriteAccount,
		"--azure-endpoint", strings.Replace(az.Endpoint, localenv.AzuriteAccount, "{account}", 1),
	}}
}

// AzureSecrets is the CSI secret for the Azurite account.
func AzureSecrets() map[string]string {
	return map[string]string{"accountKey": localenv.AzuriteKey}
}

// AzureEndpoint is the account URL template of the Azurite server.
func (e Emulators) AzureEndpoint() string {
	return strings.Replace(e.Azure.Endpoint, localenv.AzuriteAccount, "{account}", 1)
}

// WaitGone waits up to 15 seconds for a FUSE server process to exit and
// reports whether it did. A killed server can take seconds to be gone on a
// loaded machine (CI runs the test packages in parallel); it returns as
// soon as it is.
func WaitGone(p mounter.Started) bool {
	for deadline := time.Now().Add(15 * time.Second); p.Alive() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	return !p.Alive()
}

// MustBeGone is WaitGone that fails the test when the server is still
// there: what follows relies on it being dead.
func MustBeGone(t testing.TB, p mounter.Started) {
	t.Helper()
	if !WaitGone(p) {
		t.Fatalf("FUSE server %d still runs 15 s after it was killed", p.Pid)
	}
}
