package test

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/bucket-csi/bucket-csi/internal/localenv"
)

// TestChartSidecars: by default the chart runs no node-driver-registrar or
// livenessprobe (the driver registers with kubelet and answers /healthz
// itself); sidecars.upstream=true runs them instead of the driver's own.
func TestChartSidecars(t *testing.T) {
	chart := filepath.Join(localenv.RepoRoot(), "charts", "bucket-csi")
	def := helm(t, "template", "bucket-csi", chart, "--namespace", "bucket-csi")
	up := helm(t, "template", "bucket-csi", chart, "--namespace", "bucket-csi", "--set", "sidecars.upstream=true")
	strictDecode(t, "chart (upstream sidecars)", up)
	checkImages(t, "chart (upstream sidecars)", up)
	own := []string{
		"--kubelet-registration-path=/var/lib/kubelet/plugins/bucket.csi.io/csi.sock",
		"--registration-dir=/registration",
		"--health-port=9809",
		"--health-port=9808",
	}
	for _, s := range own {
		if !bytes.Contains(def, []byte(s)) {
			t.Errorf("default chart renders no %q", s)
		}
		if bytes.Contains(up, []byte("- "+s+"\n")) {
			t.Errorf("chart with upstream sidecars still passes the driver %q", s)
		}
	}
	for _, s := range []string{"csi-node-driver-registrar:", "livenessprobe:"} {
		if bytes.Contains(def, []byte(s)) {
			t.Errorf("default chart runs %q", s)
		}
		if !bytes.Contains(up, []byte(s)) {
			t.Errorf("chart with upstream sidecars runs no %q", s)
		}
	}
	if n := bytes.Count(up, []byte("args: [--csi-address=/csi/csi.sock, --health-port=")); n != 2 {
		t.Errorf("chart with upstream sidecars runs %d livenessprobes, want 2", n)
	}
}
