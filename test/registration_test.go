package test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"github.com/bucket-csi/bucket-csi/internal/localenv"
	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// TestKubeletRegistration plays kubelet's plugin watcher against the real
// node plugin started with --kubelet-registration-path: it finds the
// registration socket, asks GetInfo, calls NodeGetInfo on the announced CSI
// endpoint, reports success, and reads /healthz from --health-port; after a
// SIGTERM the registration socket is gone (kubelet then deregisters).
func TestKubeletRegistration(t *testing.T) {
	s3 := testenv.StartS3(t)
	regDir := t.TempDir()
	port, err := localenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	d := testenv.StartDriver(t, s3, "--services=node", "--registration-dir="+regDir,
		"--kubelet-registration-path="+filepath.Join(os.TempDir(), "announced", "csi.sock"), "--health-port="+strconv.Itoa(port))
	regSock := filepath.Join(regDir, "bucket.csi.io-reg.sock")
	waitFor(t, func() bool { _, err := os.Stat(regSock); return err == nil })

	conn, err := grpc.NewClient("unix://"+regSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	kubelet := registerapi.NewRegistrationClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := kubelet.GetInfo(ctx, &registerapi.InfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info.GetType() != registerapi.CSIPlugin || info.GetName() != "bucket.csi.io" ||
		info.GetEndpoint() != filepath.Join(os.TempDir(), "announced", "csi.sock") || strings.Join(info.GetSupportedVersions(), ",") != "1.0.0" {
		t.Fatalf("GetInfo = %v", info)
	}
	node, err := d.Dial(t).Node.NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
	if err != nil || node.GetNodeId() != "local-node" {
		t.Fatalf("NodeGetInfo = %v, %v", node, err)
	}
	if _, err := kubelet.NotifyRegistrationStatus(ctx, &registerapi.RegistrationStatus{PluginRegistered: true}); err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/healthz", port)
	if code, body := httpGet(t, url); code != http.StatusOK || body != "ok" {
		t.Fatalf("/healthz of a registered driver: %d %q", code, body)
	}
	// A refusal makes the driver unhealthy, so kubelet restarts it.
	if _, err := kubelet.NotifyRegistrationStatus(ctx, &registerapi.RegistrationStatus{Error: "test refusal"}); err != nil {
		t.Fatal(err)
	}
	if code, body := httpGet(t, url); code != http.StatusInternalServerError || !strings.Contains(body, "test refusal") {
		t.Fatalf("/healthz after kubelet refused: %d %q", code, body)
	}

	d.Kill(syscall.SIGTERM)
	if _, err := os.Lstat(regSock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("registration socket left after SIGTERM: %v", err)
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met within 10s")
}
