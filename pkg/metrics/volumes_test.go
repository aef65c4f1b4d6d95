package metrics

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bucket-csi/bucket-csi/pkg/copier"
	"github.com/bucket-csi/bucket-csi/pkg/fuseproto"
	"github.com/bucket-csi/bucket-csi/pkg/readahead"
	"github.com/bucket-csi/bucket-csi/pkg/stage"
)

// TestVolumeCollector: each staged volume's figures leave as the series
// of its mode with the PV name (or a short hash) as the label, with exact
// values; what the plugin noted (repairs, stage time) joins them; a
// forgotten (unstaged) volume's series are gone from the next scrape; a
// server without a control socket is not reported down.
func TestVolumeCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	n, err := NewNode(reg)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	n.Staging("id-cached", t0.Add(-time.Hour))
	n.StageFailed("id-cached") // a failed stage does not count
	n.Staging("id-cached", t0)
	n.Staging("id-cached", t0.Add(time.Second)) // a retry: the first counts
	n.Staged("id-cached", "MOUNT_CACHED", t0.Add(4*time.Second))
	n.Repaired("id-cached")
	n.Repaired("id-cached")
	vols := []Volume{
		{ID: "id-cached", PV: "pvc-1", Mode: "MOUNT_CACHED", FUSE: &fuseproto.Stats{
			Status:               fuseproto.Status{Pending: 3, PendingBytes: 3000, Uploading: 1, Retrying: 1},
			OldestPendingSeconds: 12.5, BytesRead: 10, BytesWritten: 4096, StoreBytes: 5000, TransferErrors: 2,
			Requests:   []fuseproto.Requests{{Method: "PUT", Status: "2xx", Count: 7}, {Method: "PUT", Status: "5xx", Count: 2}},
			CacheBytes: 8192, CacheReadBuffer: 1 << 20, Passthrough: true, PassthroughOpens: 6, PassthroughWrites: 2, PassthroughWritersDeclined: 3, MappedConflicts: 1, ReadAhead: readahead.HitCounts{SmallHits: 4, MTimeHits: 11}, // SmallFetches 0: no prefetch, no gauge
		}},
		{ID: "id-mount", Mode: "MOUNT", FUSE: &fuseproto.Stats{BytesRead: 100, ReadAhead: readahead.HitCounts{BlockHits: 5, BlockMisses: 1, SmallHits: 9, MTimeHits: 3}, SmallFetches: 4}},
		{ID: "id-dead", PV: "pvc-dead", Mode: "MOUNT"},
		{ID: "id-old", PV: "pvc-old", Mode: "MOUNT", NoStats: true},
		{ID: "id-copy", PV: "pvc-copy", Mode: "COPY", Copy: &stage.CopyFigures{Figures: copier.Figures{FilesDone: 301, FilesTotal: 301, BytesDone: 1 << 20, BytesTotal: 1 << 20}, Complete: true}},
	}
	reg.MustRegister(n.Collector(func(context.Context) []Volume { return vols }))
	h := VolumeHash("id-mount")
	if !strings.HasPrefix(h, "vol-") || len(h) != 16 || h == VolumeHash("id-dead") {
		t.Fatalf("hash label %q", h)
	}
	want := `
# HELP bucket_csi_volume_cache_read_buffer_bytes How far ahead of a read that misses the MOUNT_CACHED cache the FUSE server reads: 1 MiB for a store that answered in under 2 ms at its start, else 16 MiB.
# TYPE bucket_csi_volume_cache_read_buffer_bytes gauge
bucket_csi_volume_cache_read_buffer_bytes{volume="pvc-1"} 1.048576e+06
# HELP bucket_csi_volume_copy_complete 1 once the volume's copy finished successfully, 0 while it runs or after it failed.
# TYPE bucket_csi_volume_copy_complete gauge
bucket_csi_volume_copy_complete{volume="pvc-copy"} 1
# HELP bucket_csi_volume_copy_done_objects COPY objects fetched by the volume's running or last copy.
# TYPE bucket_csi_volume_copy_done_objects gauge
bucket_csi_volume_copy_done_objects{volume="pvc-copy"} 301
# HELP bucket_csi_volume_fuse_repairs_total Dead FUSE servers of the volume found and restarted by this node plugin.
# TYPE bucket_csi_volume_fuse_repairs_total counter
bucket_csi_volume_fuse_repairs_total{volume="pvc-1"} 2
bucket_csi_volume_fuse_repairs_total{volume="pvc-copy"} 0
bucket_csi_volume_fuse_repairs_total{volume="pvc-dead"} 0
bucket_csi_volume_fuse_repairs_total{volume="pvc-old"} 0
bucket_csi_volume_fuse_repairs_total{volume="` + h + `"} 0
# HELP bucket_csi_volume_fuse_up 1 when the volume's FUSE server answered this scrape, 0 when it did not (MOUNT, MOUNT_CACHED).
# TYPE bucket_csi_volume_fuse_up gauge
bucket_csi_volume_fuse_up{volume="pvc-1"} 1
bucket_csi_volume_fuse_up{volume="pvc-dead"} 0
bucket_csi_volume_fuse_up{volume="` + h + `"} 1
# HELP bucket_csi_volume_fuse_passthrough 1 while the MOUNT_CACHED FUSE server hands the kernel cache files (FUSE passthrough, Linux 6.9+), else 0.
# TYPE bucket_csi_volume_fuse_passthrough gauge
bucket_csi_volume_fuse_passthrough{volume="pvc-1"} 1
# HELP bucket_csi_volume_fuse_passthrough_opens_total MOUNT_CACHED read-only opens answered with FUSE passthrough: their reads go from the cache file without the FUSE server (and are not in bucket_csi_volume_read_bytes_total).
# TYPE bucket_csi_volume_fuse_passthrough_opens_total counter
bucket_csi_volume_fuse_passthrough_opens_total{volume="pvc-1"} 6
# HELP bucket_csi_volume_fuse_passthrough_writes_total MOUNT_CACHED write-capable opens answered with FUSE passthrough: their writes go to the cache file without the FUSE server (bucket_csi_volume_written_bytes_total counts such a file's size once its writers are done).
# TYPE bucket_csi_volume_fuse_passthrough_writes_total counter
bucket_csi_volume_fuse_passthrough_writes_total{volume="pvc-1"} 2
# HELP bucket_csi_volume_fuse_passthrough_writers_declined_total MOUNT_CACHED write-only creates served through the FUSE server without being considered for FUSE passthrough, because the 32 files written just before them were all under 512 KiB.
# TYPE bucket_csi_volume_fuse_passthrough_writers_declined_total counter
bucket_csi_volume_fuse_passthrough_writers_declined_total{volume="pvc-1"} 3
# HELP bucket_csi_volume_fuse_mapped_conflicts_total MOUNT_CACHED files a shared mapping wrote whose path meanwhile held newer content: saved beside it as <name>.conflict-<UTC time>, not merged.
# TYPE bucket_csi_volume_fuse_mapped_conflicts_total counter
bucket_csi_volume_fuse_mapped_conflicts_total{volume="pvc-1"} 1
# HELP bucket_csi_volume_pending_upload_bytes Size of the MOUNT_CACHED files not yet in the bucket.
# TYPE bucket_csi_volume_pending_upload_bytes gauge
bucket_csi_volume_pending_upload_bytes{volume="pvc-1"} 3000
# HELP bucket_csi_volume_pending_upload_files MOUNT_CACHED files closed and not yet in the bucket.
# TYPE bucket_csi_volume_pending_upload_files gauge
bucket_csi_volume_pending_upload_files{volume="pvc-1"} 3
# HELP bucket_csi_volume_pending_upload_oldest_seconds How long the oldest MOUNT_CACHED file pending upload has waited (0: none).
# TYPE bucket_csi_volume_pending_upload_oldest_seconds gauge
bucket_csi_volume_pending_upload_oldest_seconds{volume="pvc-1"} 12.5
# HELP bucket_csi_volume_readahead_hits_total Reads served from read-ahead: kind block (MOUNT: a block fetched before it was read), small_file (MOUNT and MOUNT_CACHED: a whole small file fetched ahead) or mtime (a stat answered with an mtime looked up ahead, on stores where it takes a request).
# TYPE bucket_csi_volume_readahead_hits_total counter
bucket_csi_volume_readahead_hits_total{kind="mtime",volume="pvc-1"} 11
bucket_csi_volume_readahead_hits_total{kind="small_file",volume="pvc-1"} 4
bucket_csi_volume_readahead_hits_total{kind="block",volume="` + h + `"} 5
bucket_csi_volume_readahead_hits_total{kind="mtime",volume="` + h + `"} 3
bucket_csi_volume_readahead_hits_total{kind="small_file",volume="` + h + `"} 9
# HELP bucket_csi_volume_readahead_small_fetches Small files the FUSE server may fetch ahead at once now (MOUNT and MOUNT_CACHED): 4 to 16, fewer while the store's answers come late for queueing on the node's CPU or the server rather than for the round trip.
# TYPE bucket_csi_volume_readahead_small_fetches gauge
bucket_csi_volume_readahead_small_fetches{volume="` + h + `"} 4
# HELP bucket_csi_volume_stage_duration_seconds How long the volume's last completed stage took.
# TYPE bucket_csi_volume_stage_duration_seconds gauge
bucket_csi_volume_stage_duration_seconds{volume="pvc-1"} 4
# HELP bucket_csi_volume_store_requests_total HTTP requests of the FUSE server to the store, by method and status class (2xx, 3xx, 4xx, 5xx, error: no response).
# TYPE bucket_csi_volume_store_requests_total counter
bucket_csi_volume_store_requests_total{method="PUT",status="2xx",volume="pvc-1"} 7
bucket_csi_volume_store_requests_total{method="PUT",status="5xx",volume="pvc-1"} 2
# HELP bucket_csi_volume_written_bytes_total Bytes pods wrote through the volume's FUSE mount (a file written through FUSE passthrough counts its size once its writers are done).
# TYPE bucket_csi_volume_written_bytes_total counter
bucket_csi_volume_written_bytes_total{volume="pvc-1"} 4096
bucket_csi_volume_written_bytes_total{volume="` + h + `"} 0
`
	names := []string{"bucket_csi_volume_cache_read_buffer_bytes", "bucket_csi_volume_copy_complete", "bucket_csi_volume_copy_done_objects", "bucket_csi_volume_fuse_repairs_total",
		"bucket_csi_volume_fuse_up", "bucket_csi_volume_fuse_passthrough", "bucket_csi_volume_fuse_passthrough_opens_total", "bucket_csi_volume_fuse_passthrough_writes_total", "bucket_csi_volume_fuse_passthrough_writers_declined_total", "bucket_csi_volume_fuse_mapped_conflicts_total", "bucket_csi_volume_pending_upload_bytes", "bucket_csi_volume_pending_upload_files",
		"bucket_csi_volume_pending_upload_oldest_seconds", "bucket_csi_volume_readahead_hits_total", "bucket_csi_volume_readahead_small_fetches", "bucket_csi_volume_stage_duration_seconds",
		"bucket_csi_volume_store_requests_total", "bucket_csi_volume_written_bytes_total"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
	count, err := testutil.GatherAndCount(reg, "bucket_csi_stage_duration_seconds")
	if err != nil || count != 1 {
		t.Fatalf("stage histogram series = %d (%v), want 1", count, err)
	}

	// Unstaged: the source no longer lists it and its notes are dropped.
	n.Forget("id-cached")
	vols = vols[1:]
	if c, _ := testutil.GatherAndCount(reg, "bucket_csi_volume_pending_upload_files", "bucket_csi_volume_fuse_repairs_total"); c != 4 {
		t.Fatalf("series after unstage = %d, want the 4 other volumes' repairs only", c)
	}
	vols = append(vols, Volume{ID: "id-cached", PV: "pvc-1", Mode: "MOUNT_CACHED"})
	if c := testutil.ToFloat64(mustCollect(t, n, vols, "bucket_csi_volume_fuse_repairs_total", "pvc-1")); c != 0 {
		t.Fatalf("repairs of a volume staged again = %v, want 0 (forgotten)", c)
	}
	var nilNode *Node
	nilNode.Staging("x", t0)
	nilNode.Staged("x", "MOUNT", t0)
	nilNode.StageFailed("x")
	nilNode.Repaired("x")
	nilNode.Flushed("MOUNT_CACHED", time.Second)
	nilNode.Forget("x")
}

// mustCollect returns the metric name{volume=label} of a scrape of vols.
func mustCollect(t *testing.T, n *Node, vols []Volume, name, label string) prometheus.Collector {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(n.Collector(func(context.Context) []Volume { return vols }))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == label {
				g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})
				g.Set(m.GetCounter().GetValue() + m.GetGauge().GetValue())
				return g
			}
		}
	}
	t.Fatalf("%s{volume=%q} not collected", name, label)
	return nil
}
