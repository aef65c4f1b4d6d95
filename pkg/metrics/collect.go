package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// desc builds the description of a per-volume family.
func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, append([]string{"volume"}, labels...), nil)
}

// volumeDescs are the per-volume families. Counters come from the FUSE
// server and restart at zero when it is restarted (Prometheus' rate()
// handles the reset).
type volumeDescs struct {
	info, up, read, written, storeBytes, requests, transferErrors,
	raHits, raMisses, smallFetches, pendingFiles, pendingBytes, pendingOldest, retrying, cacheBytes, cacheReadBuffer,
	passthrough, passthroughOpens, passthroughWrites, writersDeclined, mappedConflicts,
	copyFiles, copyFilesTotal, copyBytes, copyBytesTotal, copyComplete,
	repairs, stageSeconds *prometheus.Desc
}

func newVolumeDescs() *volumeDescs {
	return &volumeDescs{
		info:           desc("bucket_csi_volume_info", "1 for each volume staged on this node, with its mode.", "mode"),
		up:             desc("bucket_csi_volume_fuse_up", "1 when the volume's FUSE server answered this scrape, 0 when it did not (MOUNT, MOUNT_CACHED)."),
		read:           desc("bucket_csi_volume_read_bytes_total", "Bytes pods read through the volume's FUSE mount."),
		written:        desc("bucket_csi_volume_written_bytes_total", "Bytes pods wrote through the volume's FUSE mount (a file written through FUSE passthrough counts its size once its writers are done)."),
		storeBytes:     desc("bucket_csi_volume_store_bytes_total", "Bytes the FUSE server transferred to or from the store (uploads and downloads)."),
		requests:       desc("bucket_csi_volume_store_requests_total", "HTTP requests of the FUSE server to the store, by method and status class (2xx, 3xx, 4xx, 5xx, error: no response).", "method", "status"),
		transferErrors: desc("bucket_csi_volume_transfer_errors_total", "Transfers to or from the store that failed (each retry counts)."),
		raHits:         desc("bucket_csi_volume_readahead_hits_total", "Reads served from read-ahead: kind block (MOUNT: a block fetched before it was read), small_file (MOUNT and MOUNT_CACHED: a whole small file fetched ahead) or mtime (a stat answered with an mtime looked up ahead, on stores where it takes a request).", "kind"),
		raMisses:       desc("bucket_csi_volume_readahead_misses_total", "MOUNT read-ahead blocks that a read had to wait for."),
		smallFetches:   desc("bucket_csi_volume_readahead_small_fetches", "Small files the FUSE server may fetch ahead at once now (MOUNT and MOUNT_CACHED): 4 to 16, fewer while the store's answers come late for queueing on the node's CPU or the server rather than for the round trip."),
		pendingFiles:   desc("bucket_csi_volume_pending_upload_files", "MOUNT_CACHED files closed and not yet in the bucket."),
		pendingBytes:   desc("bucket_csi_volume_pending_upload_bytes", "Size of the MOUNT_CACHED files not yet in the bucket."),
		pendingOldest:  desc("bucket_csi_volume_pending_upload_oldest_seconds", "How long the oldest MOUNT_CACHED file pending upload has waited (0: none)."),
		retrying:       desc("bucket_csi_volume_upload_retrying_files", "MOUNT_CACHED files whose upload failed at least once and waits to retry."),
		cacheBytes:     desc("bucket_csi_volume_cache_bytes", "Disk used by the MOUNT_CACHED cache, as rclone's cache cleaner last measured it."),
		cacheReadBuffer: desc("bucket_csi_volume_cache_read_buffer_bytes",
			"How far ahead of a read that misses the MOUNT_CACHED cache the FUSE server reads: 1 MiB for a store that answered in under 2 ms at its start, else 16 MiB."),
		passthrough: desc("bucket_csi_volume_fuse_passthrough", "1 while the MOUNT_CACHED FUSE server hands the kernel cache files (FUSE passthrough, Linux 6.9+), else 0."),
		passthroughOpens: desc("bucket_csi_volume_fuse_passthrough_opens_total",
			"MOUNT_CACHED read-only opens answered with FUSE passthrough: their reads go from the cache file without the FUSE server (and are not in bucket_csi_volume_read_bytes_total)."),
		passthroughWrites: desc("bucket_csi_volume_fuse_passthrough_writes_total",
			"MOUNT_CACHED write-capable opens answered with FUSE passthrough: their writes go to the cache file without the FUSE server (bucket_csi_volume_written_bytes_total counts such a file's size once its writers are done)."),
		writersDeclined: desc("bucket_csi_volume_fuse_passthrough_writers_declined_total",
			"MOUNT_CACHED write-only creates served through the FUSE server without being considered for FUSE passthrough, because the 32 files written just before them were all under 512 KiB."),
		mappedConflicts: desc("bucket_csi_volume_fuse_mapped_conflicts_total",
			"MOUNT_CACHED files a shared mapping wrote whose path meanwhile held newer content: saved beside it as <name>.conflict-<UTC time>, not merged."),
		copyFiles:      desc("bucket_csi_volume_copy_done_objects", "COPY objects fetched by the volume's running or last copy."),
		copyFilesTotal: desc("bucket_csi_volume_copy_planned_objects", "COPY objects the running or last copy has to fetch (objects already on the node from an earlier copy are left out)."),
		copyBytes:      desc("bucket_csi_volume_copy_done_bytes", "COPY bytes fetched by the running or last copy."),
		copyBytesTotal: desc("bucket_csi_volume_copy_planned_bytes", "COPY bytes the running or last copy has to fetch."),
		copyComplete:   desc("bucket_csi_volume_copy_complete", "1 once the volume's copy finished successfully, 0 while it runs or after it failed."),
		repairs:        desc("bucket_csi_volume_fuse_repairs_total", "Dead FUSE servers of the volume found and restarted by this node plugin."),
		stageSeconds:   desc("bucket_csi_volume_stage_duration_seconds", "How long the volume's last completed stage took."),
	}
}

// collector is the per-volume prometheus.Collector of a Node.
type collector struct {
	n      *Node
	source Source
	d      *volumeDescs
}

// Collector returns the per-volume collector reading source at each
// scrape (with a 10 s deadline); register it with the same registry.
func (n *Node) Collector(source Source) prometheus.Collector {
	return &collector{n: n, source: source, d: newVolumeDescs()}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	prometheus.DescribeByCollect(c, ch)
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, v := range c.source(ctx) {
		c.volume(ch, v)
	}
}

// volume emits the series of one volume.
func (c *collector) volume(ch chan<- prometheus.Metric, v Volume) {
	d := c.d
	label := v.Label()
	emit := func(desc *prometheus.Desc, t prometheus.ValueType, value float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, t, value, append([]string{label}, labels...)...)
	}
	gauge := func(desc *prometheus.Desc, value float64, labels ...string) {
		emit(desc, prometheus.GaugeValue, value, labels...)
	}
	counter := func(desc *prometheus.Desc, value int64, labels ...string) {
		emit(desc, prometheus.CounterValue, float64(value), labels...)
	}
	gauge(d.info, 1, v.Mode)
	notes := c.n.noted(v.ID)
	counter(d.repairs, notes.repairs)
	if notes.stageSeconds > 0 {
		gauge(d.stageSeconds, notes.stageSeconds)
	}
	if v.Copy != nil {
		gauge(d.copyFiles, float64(v.Copy.FilesDone))
		gauge(d.copyFilesTotal, float64(v.Copy.FilesTotal))
		gauge(d.copyBytes, float64(v.Copy.BytesDone))
		gauge(d.copyBytesTotal, float64(v.Copy.BytesTotal))
		gauge(d.copyComplete, b2f(v.Copy.Complete))
	}
	if v.Mode == string(volume.ModeCopy) {
		return
	}
	if v.NoStats {
		return
	}
	gauge(d.up, b2f(v.FUSE != nil))
	s := v.FUSE
	if s == nil {
		return
	}
	counter(d.read, s.BytesRead)
	counter(d.written, s.BytesWritten)
	counter(d.storeBytes, s.StoreBytes)
	counter(d.transferErrors, s.TransferErrors)
	for _, r := range s.Requests {
		counter(d.requests, r.Count, r.Method, r.Status)
	}
	counter(d.raHits, s.ReadAhead.SmallHits, "small_file")
	counter(d.raHits, s.ReadAhead.MTimeHits, "mtime")
	if s.SmallFetches > 0 { // 0: a server without small-file prefetch
		gauge(d.smallFetches, float64(s.SmallFetches))
	}
	if v.Mode == string(volume.ModeMountCached) {
		gauge(d.pendingFiles, float64(s.Pending))
		gauge(d.pendingBytes, float64(s.PendingBytes))
		gauge(d.pendingOldest, s.OldestPendingSeconds)
		gauge(d.retrying, float64(s.Retrying))
		gauge(d.cacheBytes, float64(s.CacheBytes))
		if s.CacheReadBuffer > 0 { // 0: a server from before it was reported
			gauge(d.cacheReadBuffer, float64(s.CacheReadBuffer))
		}
		gauge(d.passthrough, b2f(s.Passthrough))
		counter(d.passthroughOpens, s.PassthroughOpens)
		counter(d.passthroughWrites, s.PassthroughWrites)
		counter(d.writersDeclined, s.PassthroughWritersDeclined)
		counter(d.mappedConflicts, s.MappedConflicts)
		return
	}
	counter(d.raHits, s.ReadAhead.BlockHits, "block")
	counter(d.raMisses, s.ReadAhead.BlockMisses)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
