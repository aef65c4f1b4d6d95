//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// scrape reads /metrics of the first pod of a bucket-csi component on
// port; the test runs in the cluster's network namespace, so the pod's
// address answers directly.
func (e *env) scrape(t *testing.T, component string, port int) string {
	t.Helper()
	pods, err := e.kube.CoreV1().Pods(driverNS).List(ctx(t), metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=bucket-csi,app.kubernetes.io/component=" + component})
	if err != nil || len(pods.Items) == 0 {
		t.Fatalf("%s pods: %v (%d)", component, err, len(pods.Items))
	}
	url := fmt.Sprintf("http://%s:%d/metrics", pods.Items[0].Status.PodIP, port)
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(body)
}

// metric sums the samples of name whose labels hold every `k="v"` in
// labels; found is false when there is none.
func metric(text, name string, labels ...string) (sum float64, found bool) {
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if i := strings.LastIndexByte(line, ' '); ok && i > 0 {
			if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
				sum, found = sum+v, true
			}
		}
	}
	return sum, found
}

// TestScenario11MetricsAndEvents: after a COPY pod and a MOUNT_CACHED pod
// ran, the node plugin's /metrics shows the CSI calls by method and code,
// the bytes the pod wrote, no pending upload once it is flushed and the
// COPY's objects; the controller's shows CreateVolume; and the COPY's
// events are on the PV (kubectl describe pv) and the pod.
func TestScenario11MetricsAndEvents(t *testing.T) {
	e := newEnv(t)
	ns := e.namespace(t, "s11")
	bucket := e.createBucket(t, "e2e-metrics")
	for i := 0; i < 5; i++ {
		e.putObject(t, bucket, fmt.Sprintf("f%d.txt", i), "metrics scenario")
	}
	pvName := "copy-" + ns
	e.staticPV(t, pvName, "s3://"+bucket, "COPY", corev1.PersistentVolumeReclaimRetain, secretName)
	e.pvc(t, ns, "copy", "", corev1.ReadWriteMany, pvName)
	if out := strings.TrimSpace(e.runPod(t, podSpec(ns, "copy", "ls /data | wc -l", claimVolume("copy")))); out != "5" {
		t.Fatalf("the COPY pod saw %s files, want 5", out)
	}

	sc := e.storageClass(t, map[string]string{"mode": "MOUNT_CACHED"}, corev1.PersistentVolumeReclaimDelete)
	cachedPV := e.pvc(t, ns, "cached", sc, corev1.ReadWriteMany, "")
	writer := podSpec(ns, "writer", "dd if=/dev/zero of=/data/w bs=1M count=4 2>/dev/null && sync /data/w && echo written && sleep 3600", claimVolume("cached"))
	e.createPod(t, writer)
	e.eventually(t, 3*time.Minute, "writer wrote", func() (bool, error) {
		return strings.Contains(e.podLog(t, writer), "written"), nil
	})
	vol := `volume="` + cachedPV + `"`
	var node string
	e.eventually(t, 2*time.Minute, "uploads flushed in the node's metrics", func() (bool, error) {
		node = e.scrape(t, "node", 9811)
		pending, ok := metric(node, "bucket_csi_volume_pending_upload_files", vol)
		return ok && pending == 0, fmt.Errorf("pending_upload_files %v (found %v)", pending, ok)
	})
	if w, _ := metric(node, "bucket_csi_volume_written_bytes_total", vol); w < 4<<20 {
		t.Fatalf("written bytes of %s: %v, want >= 4 MiB", cachedPV, w)
	}
	for _, m := range []string{"NodeStageVolume", "NodePublishVolume"} {
		if n, _ := metric(node, "bucket_csi_operations_total", `method="`+m+`"`, `code="OK"`); n < 2 {
			t.Fatalf("node operations %s OK: %v", m, n)
		}
	}
	ctl := e.scrape(t, "controller", 9810)
	if n, _ := metric(ctl, "bucket_csi_operations_total", `method="CreateVolume"`, `code="OK"`); n < 1 {
		t.Fatalf("controller CreateVolume OK: %v", n)
	}
	e.deletePod(t, ns, "writer")

	for _, obj := range []string{pvName, "copy"} {
		events := e.events(t, "", obj)
		if obj == "copy" {
			events = e.events(t, ns, obj)
		}
		if !strings.Contains(events, "CopyDone") {
			t.Fatalf("no CopyDone event on %s:\n%s", obj, events)
		}
		t.Logf("events on %s:\n%s", obj, events)
	}
}
