package mounter

// The control-socket client: the plugin side of fuseproto's requests.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/fuseproto"
)

// Query asks the FUSE server behind the control socket at path for its
// status; flush=true first makes every queued upload start now. A server
// that does not answer is fault.Unavailable.
func Query(ctx context.Context, path string, flush bool) (fuseproto.Status, error) {
	method, url := http.MethodGet, "http://fuse"+fuseproto.PathStatus
	if flush {
		method, url = http.MethodPost, "http://fuse"+fuseproto.PathFlush
	}
	var st fuseproto.Status
	err := call(ctx, path, method, url, &st)
	return st, err
}

// QueryStats asks the FUSE server behind the control socket at path for
// its Stats. A server that does not answer, or predates /stats, is
// fault.Unavailable.
func QueryStats(ctx context.Context, path string) (fuseproto.Stats, error) {
	var st fuseproto.Stats
	err := call(ctx, path, http.MethodGet, "http://fuse"+fuseproto.PathStats, &st)
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
func WaitDrained(ctx context.Context, path string, margin time.Duration) (fuseproto.Status, error) {
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
