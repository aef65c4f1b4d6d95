package driver

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/fuseproto"
	"github.com/bucket-csi/bucket-csi/pkg/redact"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// Listen opens the endpoint ("unix:///path/csi.sock" or a bare path),
// replacing a stale socket file. The socket is made 0660.
func Listen(endpoint string) (net.Listener, error) {
	path := endpoint
	if u, err := url.Parse(endpoint); err == nil && u.Scheme != "" {
		if u.Scheme != "unix" {
			return nil, fmt.Errorf("endpoint %q: only unix:// sockets are supported", endpoint)
		}
		path = u.Path
	}
	if path == "" {
		return nil, fmt.Errorf("endpoint %q has no socket path", endpoint)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("removing stale socket: %w", err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// NewGRPCServer returns a gRPC server with the services of d registered and
// the logging interceptor installed; with Config.Ops, the metrics
// interceptor wraps it and so counts the final status of every call.
func (d *Driver) NewGRPCServer() *grpc.Server {
	chain := []grpc.UnaryServerInterceptor{d.intercept}
	if d.cfg.Ops != nil {
		chain = append([]grpc.UnaryServerInterceptor{d.cfg.Ops.Interceptor()}, chain...)
	}
	s := grpc.NewServer(grpc.ChainUnaryInterceptor(chain...))
	csi.RegisterIdentityServer(s, d)
	if d.cfg.Controller {
		csi.RegisterControllerServer(s, d)
	}
	if d.cfg.Node {
		csi.RegisterNodeServer(s, d)
	}
	return s
}

// The most a request's secrets may hold, checked before anything else
// reads them: every mask of secrets (package redact) derives patterns from
// each key's value and each line of it, so a Secret of many short lines or
// keys, the most Kubernetes stores (1 MiB), would cost the node plugin
// hundreds of MiB per call. A FUSE server takes no more bytes
// (fuseproto.MaxSecretBytes); a store's credentials are a few keys of a
// few KiB.
const (
	maxSecretBytes = fuseproto.MaxSecretBytes
	maxSecretKeys  = 64
)

// checkSecretSize refuses (fault.Invalid) a request whose secrets exceed
// maxSecretBytes (names and values) or maxSecretKeys, naming only sizes.
func checkSecretSize(req any) error {
	r, ok := req.(interface{ GetSecrets() map[string]string })
	if !ok {
		return nil
	}
	n := 0
	for k, v := range r.GetSecrets() {
		n += len(k) + len(v)
	}
	if keys := len(r.GetSecrets()); n > maxSecretBytes || keys > maxSecretKeys {
		return fmt.Errorf("%w: the volume's secret holds %d keys and %d bytes, more than the %d keys or %d bytes the driver takes; give the volume a secret with the store's keys only", fault.Invalid, keys, n, maxSecretKeys, maxSecretBytes)
	}
	return nil
}

// intercept logs each call and converts errors to statuses. It logs the
// method, volume ID or name, paths, duration and, on failure, the code and
// the error message: never request bodies, so secrets and service-account
// tokens in secrets or volume context cannot reach the log. Engine errors
// are masked where they leave the FUSE server and the copier; as a last
// net, the message is masked once more with the request's own secrets
// before it is logged or answered. A request with oversized secrets
// (checkSecretSize) is refused before its handler runs.
func (d *Driver) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	var resp any
	oversized := checkSecretSize(req)
	err := oversized
	if err == nil {
		resp, err = h(ctx, req)
	}
	err = toStatus(err)
	// An oversized secret's refusal names sizes only, and masking it is
	// the cost the refusal avoids.
	if r, ok := req.(interface{ GetSecrets() map[string]string }); ok && err != nil && oversized == nil && len(r.GetSecrets()) > 0 {
		st, _ := status.FromError(err)
		if msg := redact.FromSecrets(r.GetSecrets()).String(st.Message()); msg != st.Message() {
			err = status.Error(st.Code(), msg)
		}
	}
	attrs := []any{"method", info.FullMethod, "duration", time.Since(start).Round(time.Millisecond)}
	if r, ok := req.(interface{ GetVolumeId() string }); ok && r.GetVolumeId() != "" {
		attrs = append(attrs, "volume", r.GetVolumeId())
	}
	if r, ok := req.(interface{ GetVolumeContext() map[string]string }); ok {
		vc := r.GetVolumeContext()
		if pv := trustedPV(vc); pv != "" {
			attrs = append(attrs, "pv", pv)
		}
		if pod := vc[volume.KeyPodName]; pod != "" {
			attrs = append(attrs, "pod", vc[volume.KeyPodNamespace]+"/"+pod)
		}
	}
	if r, ok := req.(interface{ GetName() string }); ok && r.GetName() != "" {
		attrs = append(attrs, "name", r.GetName())
	}
	if r, ok := req.(interface{ GetStagingTargetPath() string }); ok && r.GetStagingTargetPath() != "" {
		attrs = append(attrs, "staging", r.GetStagingTargetPath())
	}
	if r, ok := req.(interface{ GetTargetPath() string }); ok && r.GetTargetPath() != "" {
		attrs = append(attrs, "target", r.GetTargetPath())
	}
	if err != nil {
		st, _ := status.FromError(err)
		d.log.Warn("call failed", append(attrs, "code", st.Code().String(), "err", st.Message())...)
	} else if _, probe := req.(*csi.ProbeRequest); !probe {
		d.log.Info("call", attrs...)
	}
	return resp, err
}
