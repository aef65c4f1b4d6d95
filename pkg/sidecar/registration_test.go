package sidecar

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// kubeletClient dials a registration socket as kubelet's plugin watcher does.
func kubeletClient(t *testing.T, path string) registerapi.RegistrationClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return registerapi.NewRegistrationClient(conn)
}

func waitSocket(t *testing.T, path string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return
		}
	}
	t.Fatalf("no socket at %s", path)
}

// startRegistration serves r in a new directory that holds a stale file at
// the socket's path, as a crashed plugin leaves behind.
func startRegistration(t *testing.T, r *Registration) (path string, stop func() error) {
	t.Helper()
	dir := t.TempDir()
	path = SocketPath(dir, r.Driver)
	if err := os.WriteFile(path, []byte("stale"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx, dir) }()
	waitSocket(t, path)
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-done
	}
	t.Cleanup(func() { _ = stop() })
	return path, stop
}

func TestRegistrationAnswersKubelet(t *testing.T) {
	r := &Registration{Driver: "bucket.csi.io", Endpoint: "/var/lib/kubelet/plugins/bucket.csi.io/csi.sock"}
	path, stop := startRegistration(t, r)
	if got, want := filepath.Base(path), "bucket.csi.io-reg.sock"; got != want {
		t.Fatalf("socket name %q, want %q", got, want)
	}
	c := kubeletClient(t, path)
	ctx := context.Background()
	for range 2 { // idempotent
		info, err := c.GetInfo(ctx, &registerapi.InfoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if info.GetType() != registerapi.CSIPlugin || info.GetName() != "bucket.csi.io" ||
			info.GetEndpoint() != r.Endpoint || len(info.GetSupportedVersions()) != 1 || info.GetSupportedVersions()[0] != "1.0.0" {
			t.Fatalf("GetInfo = %v", info)
		}
	}
	if r.Registered() || r.Err() != nil {
		t.Fatalf("before kubelet's verdict: registered %v, err %v", r.Registered(), r.Err())
	}

	if _, err := c.NotifyRegistrationStatus(ctx, &registerapi.RegistrationStatus{PluginRegistered: false, Error: "version mismatch"}); err != nil {
		t.Fatal(err)
	}
	if r.Registered() || r.Err() == nil || r.Err().Error() != "kubelet refused the registration of bucket.csi.io: version mismatch" {
		t.Fatalf("after a refusal: registered %v, err %v", r.Registered(), r.Err())
	}
	if _, err := c.NotifyRegistrationStatus(ctx, &registerapi.RegistrationStatus{PluginRegistered: true}); err != nil {
		t.Fatal(err)
	}
	if !r.Registered() || r.Err() != nil {
		t.Fatalf("after a success: registered %v, err %v", r.Registered(), r.Err())
	}

	if err := stop(); err != nil {
		t.Fatalf("Serve returned %v after its context ended", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("registration socket left behind after stop: %v", err)
	}
}

func TestRegistrationNeedsNameAndEndpoint(t *testing.T) {
	for _, r := range []*Registration{{Driver: "bucket.csi.io"}, {Endpoint: "/x/csi.sock"}} {
		if err := r.Serve(context.Background(), t.TempDir()); err == nil {
			t.Fatalf("Serve(%+v) accepted an incomplete registration", r)
		}
	}
}

func TestRegistrationDirMissing(t *testing.T) {
	r := &Registration{Driver: "bucket.csi.io", Endpoint: "/x/csi.sock"}
	if err := r.Serve(context.Background(), filepath.Join(t.TempDir(), "absent")); err == nil {
		t.Fatal("Serve listened in a directory that does not exist")
	}
}
