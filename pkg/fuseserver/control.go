package fuseserver

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

	"github.com/bucket-csi/bucket-csi/pkg/fuseproto"
)

// vfsStatus reads the status of v (in the FUSE server process).
func vfsStatus(v *vfs.VFS) fuseproto.Status {
	st := fuseproto.Status{Busy: v.Busy()}
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
	items, _ := queue(v)
	for _, q := range items {
		if !q.Uploading {
			uploadNow(q.ID)
		}
	}
}

// uploadNow makes the queued upload id eligible at once.
func uploadNow(id writeback.Handle) {
	if call := rc.Calls.Get("vfs/queue-set-expiry"); call != nil {
		_, _ = call.Fn(context.Background(), rc.Params{"id": int64(id), "expiry": -1e9})
	}
}

// serveControl answers the control requests (fuseproto.PathStatus,
// PathStats, PathFlush) on a 0600 Unix socket.
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
	mux.HandleFunc(http.MethodGet+" "+fuseproto.PathStatus, func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(vfsStatus(v))
	})
	mux.HandleFunc(http.MethodGet+" "+fuseproto.PathStats, func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(m.stats(v))
	})
	mux.HandleFunc(http.MethodPost+" "+fuseproto.PathFlush, func(w http.ResponseWriter, _ *http.Request) {
		flushNow(v)
		_ = json.NewEncoder(w).Encode(vfsStatus(v))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	return func() { _ = srv.Close() }, nil
}
