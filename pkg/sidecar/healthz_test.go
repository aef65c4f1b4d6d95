package sidecar

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"github.com/bucket-csi/bucket-csi/pkg/driver"
)

// startCSI serves the real driver's Identity service on a socket.
func startCSI(t *testing.T) (endpoint string, stop func()) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "csi.sock")
	l, err := driver.Listen("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := driver.New(driver.Config{}).NewGRPCServer()
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return "unix://" + sock, srv.Stop
}

// startHealthz serves h on a loopback port until the test ends.
func startHealthz(t *testing.T, h *Healthz) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Healthz.Serve: %v", err)
		}
	})
	return "http://" + l.Addr().String() + "/healthz"
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

func TestHealthzProbesTheCSISocket(t *testing.T) {
	endpoint, stopCSI := startCSI(t)
	conn, err := DialCSI(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	url := startHealthz(t, &Healthz{Checks: []Check{ProbeCheck(conn)}})
	if code, body := get(t, url); code != http.StatusOK || body != "ok" {
		t.Fatalf("live driver: %d %q, want 200 ok", code, body)
	}
	stopCSI()
	if code, body := get(t, url); code != http.StatusInternalServerError || !strings.HasPrefix(body, "CSI probe: ") {
		t.Fatalf("stopped driver: %d %q, want 500 CSI probe: ...", code, body)
	}
}

func TestHealthzFailsOnARefusedRegistration(t *testing.T) {
	endpoint, _ := startCSI(t)
	conn, err := DialCSI(strings.TrimPrefix(endpoint, "unix://")) // a bare path works too
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := &Registration{Driver: "bucket.csi.io", Endpoint: "/x/csi.sock"}
	url := startHealthz(t, &Healthz{Checks: []Check{ProbeCheck(conn), func(context.Context) error { return r.Err() }}})
	if code, _ := get(t, url); code != http.StatusOK {
		t.Fatalf("before any verdict: %d, want 200", code)
	}
	if _, err := r.NotifyRegistrationStatus(context.Background(), &registerapi.RegistrationStatus{Error: "no"}); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, url); code != http.StatusInternalServerError || body != "kubelet refused the registration of bucket.csi.io: no" {
		t.Fatalf("refused: %d %q, want 500 with the refusal", code, body)
	}
}
