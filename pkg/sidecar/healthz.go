package sidecar

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Check is one liveness condition; a non-nil error makes /healthz fail.
type Check func(ctx context.Context) error

// ProbeCheck calls the CSI Identity Probe over conn, as livenessprobe does:
// the driver is live when its gRPC server answers on its socket and says
// ready.
func ProbeCheck(conn grpc.ClientConnInterface) Check {
	client := csi.NewIdentityClient(conn)
	return func(ctx context.Context) error {
		resp, err := client.Probe(ctx, &csi.ProbeRequest{})
		if err != nil {
			return fmt.Errorf("CSI probe: %w", err)
		}
		if r := resp.GetReady(); r != nil && !r.GetValue() {
			return fmt.Errorf("CSI probe: driver not ready")
		}
		return nil
	}
}

// DialCSI opens a client connection to a CSI endpoint (unix:///path or a
// bare path). It does not connect until first used.
func DialCSI(endpoint string) (*grpc.ClientConn, error) {
	target := endpoint
	if len(target) > 0 && target[0] == '/' {
		target = "unix://" + target
	}
	return grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// Healthz is the liveness endpoint: GET /healthz runs every check within
// Timeout and answers 200 "ok", or 500 with the first failure.
type Healthz struct {
	Checks  []Check
	Timeout time.Duration
	Log     *slog.Logger
}

// ServeHTTP implements http.Handler for /healthz.
func (h *Healthz) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	ctx, cancel := context.WithTimeout(req.Context(), timeout)
	defer cancel()
	for _, c := range h.Checks {
		if err := c(ctx); err != nil {
			if h.Log != nil {
				h.Log.Warn("health check failed", "err", err)
			}
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok"))
}

// Serve answers /healthz on l until ctx ends.
func (h *Healthz) Serve(ctx context.Context, l net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("/healthz", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(l); err != nil && err != http.ErrServerClosed {
		return err
	}
	return nil
}
