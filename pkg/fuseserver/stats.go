package fuseserver

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rclone/rclone/fs/accounting"
	"github.com/rclone/rclone/fs/fshttp"
	"github.com/rclone/rclone/fs/rc"
	"github.com/rclone/rclone/vfs"

	"github.com/bucket-csi/bucket-csi/pkg/fuseproto"
	"github.com/bucket-csi/bucket-csi/pkg/readahead"
)

// meter gathers a server's Stats. It is built before the backend so that
// rclone's HTTP transports count into it.
type meter struct {
	started     time.Time
	read, wrote atomic.Int64
	http        *prometheus.Registry
	ra          *readahead.Fs  // nil without read-ahead (MOUNT_CACHED)
	pt          *passthroughFS // nil without passthrough
	pending     pendingAges
	// cacheBuffer is the cache downloader's async buffer (MOUNT_CACHED),
	// set once before the mount is live.
	cacheBuffer int64
}

// newMeter installs rclone's HTTP transport metrics for this process (its
// only volume) in a registry of its own, never the global default one.
func newMeter() *meter {
	m := &meter{started: time.Now(), http: prometheus.NewRegistry()}
	hm := fshttp.NewMetrics("fuse")
	m.http.MustRegister(hm.Collectors()...)
	fshttp.DefaultMetrics = hm
	return m
}

// stats returns the figures of v now.
func (m *meter) stats(v *vfs.VFS) fuseproto.Stats {
	st := fuseproto.Stats{Status: vfsStatus(v), StartedAt: m.started}
	now := time.Now()
	m.sample(v, now)
	st.OldestPendingSeconds = m.pending.oldest(now).Seconds()
	st.BytesRead, st.BytesWritten = m.read.Load(), m.wrote.Load()
	acc := accounting.GlobalStats()
	st.StoreBytes, st.TransferErrors = acc.GetBytes(), acc.GetErrors()
	st.Requests = m.requests()
	st.CacheReadBuffer = m.cacheBuffer
	if dc, ok := v.Stats()["diskCache"].(rc.Params); ok {
		st.CacheBytes, _ = dc["bytesUsed"].(int64)
	}
	if m.ra != nil {
		st.ReadAhead, st.SmallFetches = m.ra.Hits(), m.ra.SmallFetches()
	}
	if m.pt != nil {
		st.Passthrough, st.PassthroughOpens, st.PassthroughWrites = m.pt.active(), m.pt.opens.Load(), m.pt.writes.Load()
		st.PassthroughWritersDeclined = m.pt.policy.declined.Load()
		st.BytesWritten += m.pt.wrote.Load()
		st.MappedConflicts = m.pt.conflicts.Load()
	}
	return st
}

// requests folds rclone's per host, method and code counter into method
// and status class.
func (m *meter) requests() []fuseproto.Requests {
	mfs, err := m.http.Gather()
	if err != nil {
		return nil
	}
	sum := map[[2]string]int64{}
	for _, mf := range mfs {
		for _, x := range mf.GetMetric() {
			var method, class string
			for _, l := range x.GetLabel() {
				switch l.GetName() {
				case "method":
					method = l.GetValue()
				case "code":
					class = statusClass(l.GetValue())
				}
			}
			sum[[2]string{method, class}] += int64(x.GetCounter().GetValue())
		}
	}
	out := make([]fuseproto.Requests, 0, len(sum))
	for k, n := range sum {
		out = append(out, fuseproto.Requests{Method: k[0], Status: k[1], Count: n})
	}
	return out
}

// sent is how many requests the server has sent the store.
func (m *meter) sent() int64 {
	var n int64
	for _, r := range m.requests() {
		n += r.Count
	}
	return n
}

// statusClass maps an HTTP status code ("0" for no response) to its class.
func statusClass(code string) string {
	n, err := strconv.Atoi(code)
	if err != nil || n < 100 || n > 599 {
		return "error"
	}
	return strconv.Itoa(n/100) + "xx"
}

// watchPending samples the upload queue each second until ctx ends, so
// the age of the oldest pending file is known between scrapes (each of
// which samples it too).
func (m *meter) watchPending(ctx context.Context, v *vfs.VFS) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		m.sample(v, time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sample records the upload queue of v at now.
func (m *meter) sample(v *vfs.VFS, now time.Time) {
	items, err := queue(v)
	if err != nil {
		return
	}
	ids := make([]uint64, 0, len(items))
	for _, q := range items {
		ids = append(ids, uint64(q.ID))
	}
	m.pending.seen(ids, now)
}

// pendingAges remembers when each queued upload was first seen.
type pendingAges struct {
	mu    sync.Mutex
	first map[uint64]time.Time
}

// seen records the queue's items at now; items gone are forgotten.
func (p *pendingAges) seen(ids []uint64, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	next := make(map[uint64]time.Time, len(ids))
	for _, id := range ids {
		t, ok := p.first[id]
		if !ok {
			t = now
		}
		next[id] = t
	}
	p.first = next
}

// oldest is the age at now of the oldest item seen; 0 when none.
func (p *pendingAges) oldest(now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	var age time.Duration
	for _, t := range p.first {
		age = max(age, now.Sub(t))
	}
	return age
}

// countingFS counts the bytes read and written through the mount.
type countingFS struct {
	fuse.RawFileSystem
	m *meter
}

func (c countingFS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	r, st := c.RawFileSystem.Read(cancel, in, buf)
	if st.Ok() && r != nil {
		c.m.read.Add(int64(r.Size()))
	}
	return r, st
}

func (c countingFS) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	n, st := c.RawFileSystem.Write(cancel, in, data)
	if st.Ok() {
		c.m.wrote.Add(int64(n))
	}
	return n, st
}
