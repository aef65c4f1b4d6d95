package fuseproto

import (
	"fmt"
	"time"

	"github.com/bucket-csi/bucket-csi/pkg/readahead"
)

// The control socket's requests (see the package comment): the server
// answers each with JSON, Status or Stats.
const (
	// PathStatus (GET) answers the server's Status.
	PathStatus = "/status"
	// PathStats (GET) answers the server's Stats.
	PathStats = "/stats"
	// PathFlush (POST) makes every queued upload start now, then answers
	// the Status.
	PathFlush = "/flush"
)

// Status is what a FUSE server reports about its volume.
type Status struct {
	// Pending is the number of closed files not yet uploaded (queued or
	// uploading); PendingBytes their size.
	Pending      int   `json:"pending"`
	PendingBytes int64 `json:"pendingBytes"`
	Uploading    int   `json:"uploading"`
	// Busy is set while files are open for writing or cached files are
	// open or waiting: an open file is uploaded only after its last close.
	Busy bool `json:"busy"`
	// Retrying counts uploads that failed at least once and wait to retry.
	Retrying int `json:"retrying"`
}

// Drained reports whether nothing is left to upload and nothing is open.
func (s Status) Drained() bool { return s.Pending == 0 && !s.Busy }

// String is the human summary used in retryable errors.
func (s Status) String() string {
	msg := fmt.Sprintf("%d files (%d bytes) pending upload, %d uploading", s.Pending, s.PendingBytes, s.Uploading)
	if s.Busy && s.Pending == 0 {
		msg += ", files still open for writing"
	}
	if s.Retrying > 0 {
		msg += fmt.Sprintf(", %d retrying after failed uploads (is the store reachable?)", s.Retrying)
	}
	return msg
}

// Stats are a FUSE server's figures since it started, answered at GET
// /stats on its control socket: counts only, never a file name or engine
// text. Counters restart from zero when the server is restarted.
type Stats struct {
	Status
	// OldestPendingSeconds is how long the oldest file pending upload has
	// waited since it was first seen queued (sampled each second); 0
	// when nothing is pending.
	OldestPendingSeconds float64 `json:"oldestPendingSeconds"`
	// BytesRead and BytesWritten went through the mount (what pods read
	// and wrote), except reads served by FUSE passthrough, which the
	// kernel makes from the cache file without the server; a file written
	// through passthrough adds its size to BytesWritten once its writers
	// are done.
	BytesRead    int64 `json:"bytesRead"`
	BytesWritten int64 `json:"bytesWritten"`
	// StoreBytes were transferred to or from the store, TransferErrors
	// the transfers that failed (rclone's accounting of the server).
	StoreBytes     int64 `json:"storeBytes"`
	TransferErrors int64 `json:"transferErrors"`
	// Requests are the HTTP requests to the store by method and status
	// class (rclone's transport metrics).
	Requests []Requests `json:"requests,omitempty"`
	// CacheBytes is the disk the VFS cache uses (MOUNT_CACHED), as
	// rclone's cache cleaner last measured it.
	CacheBytes int64 `json:"cacheBytes"`
	// CacheReadBuffer is how far ahead of a read that misses the cache
	// the cache downloader reads, in bytes (MOUNT_CACHED; 0 otherwise):
	// 1 MiB for a store that answered in under 2 ms at start, else
	// (also when nothing was measured) rclone's --buffer-size, 16 MiB.
	CacheReadBuffer int64 `json:"cacheReadBuffer"`
	// ReadAhead counts how reads were served from read-ahead (MOUNT) and
	// small-file prefetch (MOUNT and MOUNT_CACHED).
	ReadAhead readahead.HitCounts `json:"readAhead"`
	// SmallFetches is how many small files the prefetch may fetch at
	// once now (MOUNT and MOUNT_CACHED): 4 to 16, fewer while the store's
	// answers come late for queueing rather than for the round trip; 0
	// without small-file prefetch.
	SmallFetches int `json:"smallFetches"`
	// Passthrough is set while the server hands the kernel cache files
	// (FUSE passthrough, MOUNT_CACHED); PassthroughOpens counts
	// the read-only opens so answered, whose reads never reach the
	// server, and PassthroughWrites the write-capable ones, whose writes
	// never do.
	Passthrough       bool  `json:"passthrough"`
	PassthroughOpens  int64 `json:"passthroughOpens"`
	PassthroughWrites int64 `json:"passthroughWrites"`
	// PassthroughWritersDeclined counts the write-only creates (with
	// O_TRUNC or O_EXCL) served through the server without being
	// considered for a passthrough writer, because the 32 files written
	// just before them were all under 512 KiB (a writer costs a small
	// file more than it saves; MOUNT_CACHED).
	PassthroughWritersDeclined int64 `json:"passthroughWritersDeclined"`
	// MappedConflicts counts files a shared mapping wrote that could not
	// go to their path (it held newer content) and were saved beside it
	// as <name>.conflict-<UTC time> (MOUNT_CACHED, read-write).
	MappedConflicts int64 `json:"mappedConflicts"`
	// StartedAt is when the server started.
	StartedAt time.Time `json:"startedAt"`
}

// Requests counts store requests of one HTTP method and status class
// ("2xx", "3xx", "4xx", "5xx", or "error" when no response came).
type Requests struct {
	Method string `json:"method"`
	Status string `json:"status"`
	Count  int64  `json:"count"`
}
