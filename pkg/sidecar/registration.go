// Package sidecar does in the driver's own process what the upstream
// node-driver-registrar and livenessprobe sidecars do: it registers the node
// plugin with kubelet (the pluginregistration/v1 API on a socket in kubelet's
// plugins_registry directory) and answers an HTTP liveness endpoint from a
// CSI Probe over the driver's own socket.
package sidecar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"

	"google.golang.org/grpc"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// csiVersions are the CSI versions announced to kubelet (kubelet accepts
// any 1.x).
func csiVersions() []string { return []string{"1.0.0"} }

// Registration answers kubelet's plugin watcher for one CSI driver. Kubelet
// finds the socket in its plugins_registry directory, asks GetInfo for the
// driver's name and CSI endpoint, checks it (it calls NodeGetInfo on that
// endpoint) and reports the outcome with NotifyRegistrationStatus.
//
// Contract: GetInfo always answers the same PluginInfo; every
// NotifyRegistrationStatus is recorded, and Err returns the last refusal
// until a later success (so a liveness check can restart a plugin kubelet
// refused, as node-driver-registrar does by exiting).
type Registration struct {
	// Driver is the CSI driver name.
	Driver string
	// Endpoint is the driver's CSI socket path as kubelet sees it on the
	// host (e.g. /var/lib/kubelet/plugins/bucket.csi.io/csi.sock).
	Endpoint string
	Log      *slog.Logger

	registerapi.UnimplementedRegistrationServer
	mu         sync.Mutex
	registered bool
	err        error
}

// SocketPath is the registration socket of driver in dir, named as
// node-driver-registrar names it: <dir>/<driver>-reg.sock.
func SocketPath(dir, driver string) string {
	return filepath.Join(dir, driver+"-reg.sock")
}

// GetInfo tells kubelet which plugin this is and where its CSI socket is.
func (r *Registration) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return &registerapi.PluginInfo{
		Type:              registerapi.CSIPlugin,
		Name:              r.Driver,
		Endpoint:          r.Endpoint,
		SupportedVersions: csiVersions(),
	}, nil
}

// NotifyRegistrationStatus records kubelet's verdict.
func (r *Registration) NotifyRegistrationStatus(_ context.Context, st *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if st.GetPluginRegistered() {
		r.registered, r.err = true, nil
		r.log().Info("registered with kubelet", "driver", r.Driver, "endpoint", r.Endpoint)
	} else {
		r.registered = false
		r.err = fmt.Errorf("kubelet refused the registration of %s: %s", r.Driver, st.GetError())
		r.log().Error("kubelet refused the registration", "driver", r.Driver, "err", st.GetError())
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}

// Registered reports whether kubelet's last word was a success.
func (r *Registration) Registered() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.registered
}

// Err is nil unless kubelet's last word was a refusal.
func (r *Registration) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

func (r *Registration) log() *slog.Logger {
	if r.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Log
}

// Serve listens on the registration socket in dir (replacing a stale one)
// and answers kubelet until ctx ends; then it stops and removes the socket,
// so kubelet deregisters the plugin as it does when node-driver-registrar
// stops. It returns once the socket is gone.
func (r *Registration) Serve(ctx context.Context, dir string) error {
	if r.Driver == "" || r.Endpoint == "" {
		return errors.New("registration needs the driver name and its kubelet-side endpoint")
	}
	path := SocketPath(dir, r.Driver)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing stale registration socket: %w", err)
	}
	l, err := listenAtomically(path)
	if err != nil {
		return fmt.Errorf("registration socket: %w", err)
	}
	srv := grpc.NewServer()
	registerapi.RegisterRegistrationServer(srv, r)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	r.log().Info("waiting for kubelet", "registration", path)
	select {
	case <-ctx.Done():
		srv.Stop()
		<-done
		err = nil
	case err = <-done:
	}
	if rmErr := os.Remove(path); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) && err == nil {
		err = rmErr
	}
	return err
}

// listenAtomically binds and listens on a hidden name (kubelet's plugin
// watcher skips names starting with a dot) and only then renames the socket
// into place, so whoever sees path appear can connect at once: a plain
// net.Listen creates the file at bind(2), before listen(2), and a dial in
// that window is refused.
func listenAtomically(path string) (net.Listener, error) {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	l, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, err
	}
	// The listener must not unlink tmp on Close: after the rename that name
	// is gone, and Serve removes path itself.
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Rename(tmp, path); err != nil {
		l.Close()
		os.Remove(tmp)
		return nil, err
	}
	return l, nil
}
