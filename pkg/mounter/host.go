package mounter

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/fuseproto"
)

// The mounter host is a long-lived process that starts FUSE servers on the
// node plugin's behalf, so the servers are its children and not the
// plugin's: in Kubernetes it runs in its own DaemonSet (updated only on
// purpose), and restarting or upgrading the node plugin's container, which
// kills every process in that container, leaves every mount serving. Both
// share the host PID namespace and the state directory, so the plugin
// checks and stops servers by pid as it does for its own.

// hostRequest asks the host to start one server.
type hostRequest struct {
	Config  *fuseproto.Config `json:"config"`
	LogPath string            `json:"logPath"`
}

// hostReply answers a hostRequest. Kind is the fault kind of Error
// (fault.Kind), so a refusal stays final across the socket; a reply
// without one is fault.Unavailable.
type hostReply struct {
	Started Started `json:"started"`
	Error   string  `json:"error,omitempty"`
	Kind    string  `json:"kind,omitempty"`
}

// ServeHost accepts start requests on socketPath (0600) until ctx ends,
// starting each server with sup (which must execute locally). Every path
// of a request (mount point, cache and private directories, control
// socket, log) must lie within one of the allowed directories (see
// Allowed.Check); anything else is refused with fault.Invalid and never
// touched.
func ServeHost(ctx context.Context, socketPath string, sup *Supervisor, allowed Allowed, log *slog.Logger) error {
	if len(allowed) == 0 {
		return fmt.Errorf("the mounter host needs the directories it may serve (kubelet and state directories)")
	}
	_ = os.Remove(socketPath)
	l, err := net.Listen("unix", socketPath)
	if err != nil {
		return err
	}
	if err := os.Chmod(socketPath, 0o600); err != nil {
		l.Close()
		return err
	}
	go func() { <-ctx.Done(); l.Close() }()
	log.Info("mounter host serving", "socket", socketPath)
	for {
		conn, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go func() {
			defer conn.Close()
			var req hostRequest
			if err := json.NewDecoder(conn).Decode(&req); err != nil || req.Config == nil {
				_ = json.NewEncoder(conn).Encode(hostReply{Error: fmt.Sprintf("bad request: %v", err), Kind: fault.Kind(fault.Invalid)})
				return
			}
			if err := allowed.Check(req.Config, req.LogPath); err != nil {
				log.Warn("refused a start request", "volume", req.Config.VolumeID, "err", err)
				_ = json.NewEncoder(conn).Encode(hostReply{Error: err.Error(), Kind: fault.Kind(err)})
				return
			}
			// The start lives as long as the plugin waits for it: when the
			// plugin gives up (closes the connection), the start is
			// cancelled and its server killed and unmounted.
			sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			go func() {
				var b [1]byte
				_, _ = conn.Read(b[:])
				cancel()
			}()
			started, err := sup.Start(sctx, req.Config, req.LogPath)
			reply := hostReply{Started: started}
			if err != nil {
				reply.Error, reply.Kind = err.Error(), fault.Kind(err)
			}
			log.Info("started FUSE server", "volume", req.Config.VolumeID, "pid", started.Pid, "err", reply.Error)
			_ = json.NewEncoder(conn).Encode(reply)
		}()
	}
}

// startRemote asks the mounter host at s.Host to start the server.
func (s *Supervisor) startRemote(ctx context.Context, cfg *fuseproto.Config, logPath string) (Started, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", s.Host)
	if err != nil {
		return Started{}, fmt.Errorf("%w: the mounter host at %s does not answer: %v", fault.Unavailable, s.Host, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if err := json.NewEncoder(conn).Encode(hostRequest{Config: cfg, LogPath: logPath}); err != nil {
		return Started{}, fmt.Errorf("%w: sending to the mounter host: %v", fault.Unavailable, err)
	}
	var reply hostReply
	if err := json.NewDecoder(conn).Decode(&reply); err != nil {
		return Started{}, fmt.Errorf("%w: reading from the mounter host: %v", fault.Unavailable, err)
	}
	if reply.Error != "" {
		kind := fault.FromKind(reply.Kind)
		if kind == nil {
			kind = fault.Unavailable
		}
		return Started{}, fmt.Errorf("%w: mounter host: %s", kind, strings.TrimPrefix(reply.Error, kind.Error()+": "))
	}
	return reply.Started, nil
}
