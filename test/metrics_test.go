package test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bucket-csi/bucket-csi/internal/localenv"
	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// scrape reads the driver's /metrics.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scraping: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing the scrape: %v", err)
	}
	return mfs
}

// sample returns the value of the series of name whose labels include
// want (a counter, gauge, or a histogram's count), and whether it exists.
func sample(mfs map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// stageWithContext stages id with the volume context kubelet passes from
// the PV (which carries the PV name), retrying while it answers
// Unavailable (a COPY downloading).
func stageWithContext(t *testing.T, c testenv.Clients, id, staging string, vctx, secrets map[string]string) {
	t.Helper()
	if err := os.MkdirAll(staging, 0o750); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(3 * time.Minute); ; {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err := c.Node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: testenv.MountCap(rwx), VolumeContext: vctx, Secrets: secrets})
		cancel()
		if err == nil {
			return
		}
		if status.Code(err) != codes.Unavailable || time.Now().After(deadline) {
			t.Fatalf("NodeStageVolume: %v", err)
		}
	}
}

// TestMetricsEndpoint runs the real driver with --metrics-address, stages
// and publishes a MOUNT_CACHED and a COPY volume (with PV names in their
// volume context, as the external-provisioner's extra metadata gives
// them), writes through the mount, and checks the scrape: CSI calls by
// method and exact code, bytes written and store PUTs for the cached
// volume, pending uploads seen and back to 0 after the flush, COPY objects
// done equal to the objects in the bucket, and every series of both
// volumes gone once they are unstaged.
func TestMetricsEndpoint(t *testing.T) {
	testenv.RequireFUSE(t)
	port, err := localenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	s3, drv, c := startAll(t, "--metrics-address", addr, "--write-back", "3s")
	ctx := context.Background()

	// An invalid call is counted under its exact code.
	if _, err := c.Node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("empty NodeStageVolume = %v, want InvalidArgument", err)
	}

	cachedPV := "pvc-metrics-cached"
	cv, cstaging, ctarget := publishedPV(t, c, drv, s3, cachedPV, map[string]string{"mode": "MOUNT_CACHED"}, "")
	cid := cv.id
	const written = 5<<20 + 3
	// Read-write, so the bytes go through the FUSE server and are counted
	// at once (a new file created write-only is written through
	// passthrough and counted after its close, when the server has handed
	// it to the cache).
	out, err := os.OpenFile(filepath.Join(ctarget, "out.bin"), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := out.Write(randomBytes(t, written)); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	cached := map[string]string{"volume": cachedPV}
	mfs := scrape(t, addr)
	if v, _ := sample(mfs, "bucket_csi_volume_written_bytes_total", cached); v != written {
		t.Fatalf("bytes written = %v, want %d", v, written)
	}
	if v, ok := sample(mfs, "bucket_csi_volume_info", map[string]string{"volume": cachedPV, "mode": "MOUNT_CACHED"}); !ok || v != 1 {
		t.Fatalf("volume info = %v %v", v, ok)
	}
	// The kernel releases the file just after close returns: poll, well
	// within the 3 s write-back delay.
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if v, _ := sample(mfs, "bucket_csi_volume_pending_upload_files", cached); v == 1 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("pending upload files right after the write = %v, want 1 (write-back 3s)", v)
		}
		mfs = scrape(t, addr)
	}
	if v, _ := sample(mfs, "bucket_csi_volume_pending_upload_bytes", cached); v != written {
		t.Fatalf("pending upload bytes = %v, want %d", v, written)
	}
	// The flush: pending back to 0 while the volume stays staged.
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		mfs = scrape(t, addr)
		if v, ok := sample(mfs, "bucket_csi_volume_pending_upload_files", cached); ok && v == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("pending uploads never went back to 0")
		}
	}
	if v, _ := sample(mfs, "bucket_csi_volume_store_requests_total", map[string]string{"volume": cachedPV, "method": "PUT", "status": "2xx"}); v < 1 {
		t.Fatalf("store PUTs with 2xx = %v, want at least 1", v)
	}
	if v, _ := sample(mfs, "bucket_csi_volume_store_bytes_total", cached); v < written {
		t.Fatalf("store bytes = %v, want at least the %d uploaded", v, written)
	}
	if v, _ := sample(mfs, "bucket_csi_volume_pending_upload_oldest_seconds", cached); v != 0 {
		t.Fatalf("oldest pending age after the flush = %v, want 0", v)
	}

	// COPY: objects done equals the objects in the bucket.
	const objects = 40
	fillSource(t, s3, "metrics-copy-src", objects-1) // plus one large object
	copyPV := "pvc-metrics-copy"
	kv := createPV(t, c, s3, copyPV, map[string]string{"source": "s3://metrics-copy-src", "mode": "COPY"})
	kid := kv.id
	kstaging := stagePV(t, c, drv, s3, kv)
	inBucket := len(keys(t, s3.Store(t), "metrics-copy-src"))
	start := time.Now()
	mfs = scrape(t, addr)
	t.Logf("one scrape with a MOUNT_CACHED and a COPY volume staged: %s", time.Since(start))
	copyL := map[string]string{"volume": copyPV}
	if v, _ := sample(mfs, "bucket_csi_volume_copy_done_objects", copyL); int(v) != inBucket || inBucket != objects {
		t.Fatalf("COPY objects done = %v, objects in the bucket %d, want both %d", v, inBucket, objects)
	}
	if v, _ := sample(mfs, "bucket_csi_volume_copy_planned_objects", copyL); int(v) != objects {
		t.Fatalf("COPY objects planned = %v, want %d", v, objects)
	}
	if v, _ := sample(mfs, "bucket_csi_volume_copy_complete", copyL); v != 1 {
		t.Fatalf("COPY complete = %v, want 1", v)
	}
	if v, ok := sample(mfs, "bucket_csi_volume_stage_duration_seconds", copyL); !ok || v <= 0 {
		t.Fatalf("COPY stage duration = %v %v, want > 0", v, ok)
	}

	// Unstage both: their series leave.
	if _, err := c.Node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: cid, TargetPath: ctarget}); err != nil {
		t.Fatal(err)
	}
	unstageUntilDone(t, c, cid, cstaging, 30*time.Second, 2*time.Minute)
	if _, err := c.Node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: kid, StagingTargetPath: kstaging}); err != nil {
		t.Fatal(err)
	}
	mfs = scrape(t, addr)
	for name, mf := range mfs {
		if !strings.HasPrefix(name, "bucket_csi_volume_") {
			continue
		}
		if n := len(mf.GetMetric()); n > 0 {
			t.Errorf("%s has %d series after every volume was unstaged", name, n)
		}
	}
	for _, tc := range []struct {
		method, code string
		want         float64
	}{
		{"NodeStageVolume", "OK", 2},
		{"NodeStageVolume", "InvalidArgument", 1},
		{"NodePublishVolume", "OK", 1},
		{"NodeUnpublishVolume", "OK", 1},
		{"CreateVolume", "OK", 2},
	} {
		if v, _ := sample(mfs, "bucket_csi_operations_total", map[string]string{"method": tc.method, "code": tc.code}); v != tc.want {
			t.Errorf("operations %s %s = %v, want %v", tc.method, tc.code, v, tc.want)
		}
	}
	if v, _ := sample(mfs, "bucket_csi_operations_total", map[string]string{"method": "NodeUnstageVolume", "code": "OK"}); v != 2 {
		t.Errorf("NodeUnstageVolume OK = %v, want 2", v)
	}
	if v, _ := sample(mfs, "bucket_csi_operation_duration_seconds", map[string]string{"method": "NodeStageVolume", "code": "OK"}); v != 2 {
		t.Errorf("NodeStageVolume OK latency observations = %v, want 2", v)
	}
	if v, _ := sample(mfs, "bucket_csi_flush_duration_seconds", map[string]string{"mode": "MOUNT_CACHED"}); v != 1 {
		t.Errorf("flush observations = %v, want 1", v)
	}
}
