package test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bucket-csi/bucket-csi/internal/localenv"
	"github.com/bucket-csi/bucket-csi/pkg/copier"
	"github.com/bucket-csi/bucket-csi/pkg/fuseproto"
	"github.com/bucket-csi/bucket-csi/pkg/metrics"
	"github.com/bucket-csi/bucket-csi/pkg/stage"
)

// TestChartMetrics: by default the controller and the node plugin serve
// metrics on their ports behind one headless Service each, log in the
// chosen format, and may record events; a ServiceMonitor and the
// dashboard ConfigMap only when asked; metrics.enabled=false renders
// none of it.
func TestChartMetrics(t *testing.T) {
	chart := filepath.Join(localenv.RepoRoot(), "charts", "bucket-csi")
	def := helm(t, "template", "bucket-csi", chart, "--namespace", "bucket-csi")
	for _, want := range []string{"- --metrics-address=:9810\n", "- --metrics-address=:9811\n", "name: bucket-csi-controller-metrics", "name: bucket-csi-node-metrics",
		"- --log-format=text\n", "name: bucket-csi-events", "resources: [events]\n    verbs: [create, patch]", "apiGroups: [events.k8s.io]", "podInfoOnMount: true",
		"resources: [persistentvolumes]\n    verbs: [get, list]\n  - apiGroups: [\"\"]\n    resources: [pods]\n    verbs: [list]"} {
		if !bytes.Contains(def, []byte(want)) {
			t.Errorf("default chart renders no %q", want)
		}
	}
	for _, port := range []string{"9810", "9811"} {
		if !bytes.Contains(def, []byte("- name: metrics\n              containerPort: "+port+"\n")) {
			t.Errorf("default chart: no container port metrics %s", port)
		}
	}
	for _, not := range []string{"kind: ServiceMonitor", "name: bucket-csi-dashboard"} {
		if bytes.Contains(def, []byte(not)) {
			t.Errorf("default chart renders %q", not)
		}
	}
	on := helm(t, "template", "bucket-csi", chart, "--namespace", "bucket-csi", "--set", "metrics.serviceMonitor.enabled=true,metrics.dashboard.configMap=true,logFormat=json")
	if n := bytes.Count(on, []byte("kind: ServiceMonitor\n")); n != 2 {
		t.Errorf("%d ServiceMonitors, want 2", n)
	}
	if n := bytes.Count(on, []byte("- --log-format=json\n")); n != 3 {
		t.Errorf("--log-format=json rendered %d times, want 3 (controller, node, mounter)", n)
	}
	if !bytes.Contains(on, []byte("grafana_dashboard: \"1\"")) || !bytes.Contains(on, []byte(`"uid": "bucket-csi"`)) {
		t.Error("dashboard ConfigMap missing or without the dashboard")
	}
	off := helm(t, "template", "bucket-csi", chart, "--namespace", "bucket-csi", "--set", "metrics.enabled=false")
	strictDecode(t, "chart (metrics off)", off)
	for _, not := range []string{"--metrics-address", "kind: Service\n", "name: metrics"} {
		if bytes.Contains(off, []byte(not)) {
			t.Errorf("metrics.enabled=false still renders %q", not)
		}
	}
}

// TestDashboardMetrics: the Grafana dashboard is valid JSON and every
// metric it queries is one the driver exports.
func TestDashboardMetrics(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(localenv.RepoRoot(), "charts", "bucket-csi", "dashboards", "bucket-csi.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	exported := exportedFamilies(t)
	name := regexp.MustCompile(`bucket_csi_[a-z_]+`)
	queried := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, m := range name.FindAllString(tg.Expr, -1) {
				base := strings.TrimSuffix(m, "_bucket")
				if !exported[base] {
					t.Errorf("panel %q queries %s, which the driver does not export", p.Title, m)
				}
				queried++
			}
		}
	}
	if queried < 20 {
		t.Errorf("the dashboard queries only %d metrics", queried)
	}
}

// exportedFamilies are the names of every family the driver exports,
// from a registry holding all of its collectors with one volume of each
// mode.
func exportedFamilies(t *testing.T) map[string]bool {
	t.Helper()
	reg := prometheus.NewRegistry()
	ops, err := metrics.NewOps(reg)
	if err != nil {
		t.Fatal(err)
	}
	node, err := metrics.NewNode(reg)
	if err != nil {
		t.Fatal(err)
	}
	ops.Observe("/csi.v1.Node/NodeStageVolume", nil, 0)
	node.Staged("c", "MOUNT_CACHED", time.Now())
	node.Flushed("MOUNT_CACHED", 0)
	reg.MustRegister(node.Collector(func(context.Context) []metrics.Volume {
		return []metrics.Volume{
			{ID: "c", Mode: "MOUNT_CACHED", FUSE: &fuseproto.Stats{Requests: []fuseproto.Requests{{Method: "PUT", Status: "2xx", Count: 1}}}},
			{ID: "m", Mode: "MOUNT", FUSE: &fuseproto.Stats{}},
			{ID: "k", Mode: "COPY", Copy: &stage.CopyFigures{Figures: copier.Figures{}}},
		}
	}))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, mf := range mfs {
		out[mf.GetName()] = true
	}
	return out
}
