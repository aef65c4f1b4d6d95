package mounter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/rclone/rclone/fs/rc"
	"github.com/rclone/rclone/vfs"
	"github.com/rclone/rclone/vfs/vfscache/writeback"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
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

// vfsStatus reads the status of v (in the FUSE server process).
func vfsStatus(v *vfs.VFS) Status {
	st := Status{Busy: v.Busy()}
	items, err := queue(v)
	if err != nil {
		// Unknown is not empty: report busy so nothing is released.
		st.Busy = true
	}
	for _, q := range items {
		st.Pending++
		st.PendingBytes += q.Size
		if q.Uploading {
			st.Uploading++
		}
		if q.Tries > 0 {
			st.Retrying++
		}
	}
	return st
}

// queue returns the write-back queue of the process's only VFS.
func queue(_ *vfs.VFS) ([]writeback.QueueInfo, error) {
	call := rc.Calls.Get("vfs/queue")
	if call == nil {
		return nil, errors.New("rclone has no vfs/queue call")
	}
	out, err := call.Fn(context.Background(), rc.Params{})
	if err != nil {
		return nil, err
	}
	q, ok := out["queue"].([]writeback.QueueInfo)
	if out == nil || !ok {
		return nil, nil // no cache: nothing can be queued
	}
	return q, nil
}

// flushNow makes every queued upload eligible at once (instead of after
// the write-back delay or a retry back-off).
func flushNow(v *vfs.VFS) {
	call := rc.Calls.Get("vfs/queue-set-expiry")
	items, _ := queue(v)
	for _, q := range items {
		if !q.Uploading && call != nil {
			_, _ = call.Fn(context.Background(), rc.Params{"id": int64(q.ID), "expiry": -1e9})
		}
	}
}

// serveControl answers GET /status, GET /stats and POST /flush on a 0600
// Unix socket.
func serveControl(path string, v *vfs.VFS, m *meter) (stop func(), err error) {
	_ = os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(vfsStatus(v))
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(m.stats(v))
	})
	mux.HandleFunc("POST /flush", func(w http.ResponseWriter, _ *http.Request) {
		flushNow(v)
		_ = json.NewEncoder(w).Encode(vfsStatus(v))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	return func() { _ = srv.Close() }, nil
}

// Query asks the FUSE server behind the control socket at path for its
// status; flush=true first makes every queued upload start now. A server
// that does not answer is fault.Unavailable.
func Query(ctx context.Context, path string, flush bool) (Status, error) {
	method, url := http.MethodGet, "http://fuse/status"
	if flush {
		method, url = http.MethodPost, "http://fuse/flush"
	}
	var st Status
	err := call(ctx, path, method, url, &st)
	return st, err
}

// QueryStats asks the FUSE server behind the control socket at path for
// its Stats. A server that does not answer, or predates /stats, is
// fault.Unavailable.
func QueryStats(ctx context.Context, path string) (Stats, error) {
	var st Stats
	err := call(ctx, path, http.MethodGet, "http://fuse/stats", &st)
	return st, err
}

// call makes one request on the control socket at path and decodes the
// JSON answer into out.
func call(ctx context.Context, path, method, url string, out any) error {
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: the FUSE server does not answer: %v", fault.Unavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: the FUSE server answered %s", fault.Unavailable, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%w: bad answer from the FUSE server: %v", fault.Unavailable, err)
	}
	return nil
}

// WaitDrained flushes and polls until the server at path has nothing
// pending, or until ctx leaves less than margin. While work remains it
// returns fault.Pending with the status in the message: retry later,
// nothing is lost.
func WaitDrained(ctx context.Context, path string, margin time.Duration) (Status, error) {
	deadline := time.Now().Add(30 * time.Second)
	if d, ok := ctx.Deadline(); ok {
		deadline = d.Add(-margin)
	}
	st, err := Query(ctx, path, true)
	for err == nil && !st.Drained() {
		if time.Now().After(deadline) {
			return st, fmt.Errorf("%w: %s; the volume stays mounted and its cache is kept until every file is in the bucket", fault.Pending, st)
		}
		time.Sleep(250 * time.Millisecond)
		// Poll only: flushing again would cut short the back-off of
		// uploads that fail, hammering a store that is down.
		st, err = Query(ctx, path, false)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return st, fmt.Errorf("%w: %v", fault.Pending, err)
	}
	return st, err
}
