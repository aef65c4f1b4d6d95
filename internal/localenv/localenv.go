// Package localenv starts the local parts bucket-csi runs against without a
// cloud account: a versitygw S3 server on loopback and the bucket-csi binary
// on a Unix socket. The tests (through test/testenv), `make demo` and
// `make bench` share it. Binaries come from bin/ or from the paths in
// BUCKET_CSI_BIN and VERSITYGW_BIN.
package localenv

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bucket-csi/bucket-csi/pkg/bucket"
)

// RepoRoot returns the repository root (the directory holding go.mod).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Binary returns the path of a built binary from envVar or bin/name.
func Binary(envVar, name string) (string, error) {
	p := os.Getenv(envVar)
	if p == "" {
		p = filepath.Join(RepoRoot(), "bin", name)
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s binary at %s (run `make build tools`): %w", name, p, err)
	}
	return p, nil
}

// FreePort returns a free loopback TCP port.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// syncBuffer is a bytes.Buffer safe for a process writing while a test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// S3 is a running versitygw server.
type S3 struct {
	Endpoint  string
	AccessKey string
	SecretKey string
	Dir       string // the posix backend directory
	Log       fmt.Stringer
	log       *syncBuffer
	argv      []string
	cmd       *exec.Cmd
}

// StartS3 starts versitygw with a posix backend in dir. pinCPU, if not
// empty, pins the server with taskset (e.g. "0" for CPU 0). region, if not
// empty, is the signing region the server expects (default us-east-1).
func StartS3(dir, pinCPU, region string) (*S3, error) {
	return startS3(dir, pinCPU, region, nil)
}

// StartS3Versioning is StartS3 with object versioning available: versions
// are kept in dir/versions for buckets that enable versioning.
func StartS3Versioning(dir string) (*S3, error) {
	versions := filepath.Join(dir, "versions")
	data := filepath.Join(dir, "data")
	for _, d := range []string{versions, data} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	return startS3(data, "", "", nil, "--versioning-dir", versions)
}

// StartS3Accounts is StartS3 with accounts (access key -> secret) beside
// the root account in versitygw's internal IAM, kept in dir/iam. Each is a
// "userplus" account: it creates buckets of its own, and its ListBuckets
// shows only those (the root account's shows every bucket).
func StartS3Accounts(dir string, accounts map[string]string) (*S3, error) {
	iam := filepath.Join(dir, "iam")
	data := filepath.Join(dir, "data")
	for _, d := range []string{iam, data} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	type account struct {
		Access string `json:"access"`
		Secret string `json:"secret"`
		Role   string `json:"role"`
	}
	users := struct {
		AccessAccounts map[string]account `json:"accessAccounts"`
	}{map[string]account{}}
	for access, secret := range accounts {
		users.AccessAccounts[access] = account{Access: access, Secret: secret, Role: "userplus"}
	}
	b, err := json.Marshal(users)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(iam, "users.json"), b, 0o600); err != nil {
		return nil, err
	}
	return startS3(data, "", "", []string{"--iam-dir", iam})
}

// startS3 starts versitygw; args go to the gateway, backendArgs to its
// posix backend.
func startS3(dir, pinCPU, region string, args []string, backendArgs ...string) (*S3, error) {
	bin, err := Binary("VERSITYGW_BIN", "versitygw")
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	log := &syncBuffer{}
	s := &S3{
		Endpoint:  fmt.Sprintf("http://127.0.0.1:%d", port),
		AccessKey: "localaccess",
		SecretKey: fmt.Sprintf("localsecret-%d", time.Now().UnixNano()),
		Dir:       dir,
		Log:       log,
		log:       log,
	}
	// Keep-alive as every cloud store keeps it: without the flag versitygw
	// answers every request with "Connection: close", so each request of
	// a client pays a new connection (one more round trip behind the
	// bench's latency proxy, docs/benchmarks.md).
	s.argv = []string{bin, "--port", fmt.Sprintf("127.0.0.1:%d", port), "--keep-alive"}
	if region != "" {
		s.argv = append(s.argv, "--region", region)
	}
	s.argv = append(append(append(append(s.argv, args...), "posix"), backendArgs...), dir)
	if pinCPU != "" {
		s.argv = append([]string{"taskset", "-c", pinCPU}, s.argv...)
	}
	if err := s.start(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *S3) start() error {
	s.cmd = exec.Command(s.argv[0], s.argv[1:]...)
	// The server's root credentials: a local test server's, passed the way
	// versitygw reads them.
	s.cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+s.AccessKey, "ROOT_SECRET_ACCESS_KEY="+s.SecretKey)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("starting versitygw: %w", err)
	}
	addr := strings.TrimPrefix(s.Endpoint, "http://")
	if err := waitDial("tcp", addr, 20*time.Second); err != nil {
		s.Stop()
		return fmt.Errorf("versitygw did not start: %w; output:\n%s", err, s.log.String())
	}
	return nil
}

// Restart kills the server and starts it again on the same port and data
// directory, for outage tests.
func (s *S3) Restart() error {
	s.Stop()
	return s.start()
}

// Stop kills the server.
func (s *S3) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	}
}

// Pause stops (SIGSTOP) or resumes (SIGCONT) the server, for outage tests.
func (s *S3) Pause(stop bool) error {
	sig := syscall.SIGCONT
	if stop {
		sig = syscall.SIGSTOP
	}
	return s.cmd.Process.Signal(sig)
}

func waitDial(network, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout(network, addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Driver is a running bucket-csi binary.
type Driver struct {
	// Dir holds the socket and the state directory.
	Dir      string
	Socket   string
	StateDir string
	Log      fmt.Stringer
	log      *syncBuffer
	bin      string
	args     []string
	cmd      *exec.Cmd
}

// WriteKeyFile writes a new random ownership key to dir/ownership.key
// (0600) and returns its path.
func WriteKeyFile(dir string) (string, error) {
	p := filepath.Join(dir, "ownership.key")
	return p, os.WriteFile(p, bucket.NewKey(), 0o600)
}

// StartDriver runs bin/bucket-csi against s3 with its state in a new
// directory below os.TempDir(); args are appended to the defaults. Unless
// args name an --ownership-key-file, the driver gets a new key in its
// directory.
func StartDriver(s3 *S3, args ...string) (*Driver, error) {
	bin, err := Binary("BUCKET_CSI_BIN", "bucket-csi")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "bucket-csi-")
	if err != nil {
		return nil, err
	}
	log := &syncBuffer{}
	d := &Driver{Dir: dir, Socket: filepath.Join(dir, "csi.sock"), StateDir: filepath.Join(dir, "state"), Log: log, log: log, bin: bin}
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--ownership-key-file") }) {
		key, err := WriteKeyFile(dir)
		if err != nil {
			return nil, err
		}
		args = append([]string{"--ownership-key-file", key}, args...)
	}
	d.args = append([]string{
		"--endpoint", "unix://" + d.Socket, "--node-id", "local-node", "--state-dir", d.StateDir,
		"--s3-endpoint", s3.Endpoint, "--s3-path-style", "--log-level", "debug",
	}, args...)
	if err := d.start(); err != nil {
		d.Stop()
		return nil, err
	}
	return d, nil
}

// Restart starts the driver again with the same socket, state and flags,
// as a node plugin restart or upgrade does (after Kill).
func (d *Driver) Restart() error { return d.start() }

// RestartWith starts the driver again with args added to its own (a flag
// given again overrides the earlier one), as an upgrade or a changed
// setting does.
func (d *Driver) RestartWith(args ...string) error {
	d.args = append(d.args, args...)
	return d.start()
}

func (d *Driver) start() error {
	d.cmd = exec.Command(d.bin, d.args...)
	d.cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		return fmt.Errorf("starting bucket-csi: %w", err)
	}
	if err := waitDial("unix", d.Socket, 15*time.Second); err != nil {
		return fmt.Errorf("bucket-csi did not listen on %s: %w; log:\n%s", d.Socket, err, d.log.String())
	}
	return nil
}

// Pid returns the driver's process ID.
func (d *Driver) Pid() int { return d.cmd.Process.Pid }

// Kill stops the driver process with sig and waits for it; mounts stay.
func (d *Driver) Kill(sig syscall.Signal) {
	if d.cmd != nil && d.cmd.Process != nil {
		_ = d.cmd.Process.Signal(sig)
		_ = d.cmd.Wait()
	}
}

// Stop stops the driver, unmounts whatever is still mounted below its
// directory (the FUSE servers then exit) and removes the directory.
func (d *Driver) Stop() {
	d.Kill(syscall.SIGTERM)
	UnmountBelow(d.Dir)
	if data, err := os.ReadFile("/proc/self/mountinfo"); err != nil || strings.Contains(string(data), " "+d.Dir+"/") {
		fmt.Fprintf(os.Stderr, "not removing %s: something is still mounted below it\n", d.Dir)
		return
	}
	_ = os.RemoveAll(d.Dir)
}

// UnmountBelow lazily unmounts every mount point below dir, deepest first.
func UnmountBelow(dir string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			points = append(points, f[4])
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		if err := syscall.Unmount(points[i], syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			fmt.Fprintf(os.Stderr, "unmounting %s: %v\n", points[i], err)
		}
	}
}
