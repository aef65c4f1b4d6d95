package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/bucket-csi/bucket-csi/pkg/driver"
	"github.com/bucket-csi/bucket-csi/pkg/sidecar"
)

// sidecarFlags configure what the driver does in place of the upstream
// node-driver-registrar and livenessprobe sidecars.
type sidecarFlags struct {
	registrationPath, registrationDir string
	healthPort                        int
	probeTimeout                      time.Duration
}

func (s *sidecarFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.registrationPath, "kubelet-registration-path", "", "node: register with kubelet, announcing this path of the CSI socket on the host (e.g. /var/lib/kubelet/plugins/"+driver.Name+"/csi.sock; empty: no registration, as with the node-driver-registrar sidecar)")
	fs.StringVar(&s.registrationDir, "registration-dir", "/registration", "kubelet's plugins_registry directory as mounted in this container")
	fs.IntVar(&s.healthPort, "health-port", 0, "answer GET /healthz on this TCP port from a CSI Probe over --endpoint (0: off, as with the livenessprobe sidecar)")
	fs.DurationVar(&s.probeTimeout, "probe-timeout", 3*time.Second, "time limit of the /healthz probe")
}

// start runs the registration and the health endpoint that are enabled
// until ctx ends; the returned wait reports their first error.
func (s *sidecarFlags) start(ctx context.Context, endpoint string, node bool, log *slog.Logger) (wait func() error, err error) {
	g, ctx := errgroup.WithContext(ctx)
	var reg *sidecar.Registration
	if s.registrationPath != "" {
		if !node {
			return nil, fmt.Errorf("--kubelet-registration-path needs the node service")
		}
		reg = &sidecar.Registration{Driver: driver.Name, Endpoint: s.registrationPath, Log: log}
		g.Go(func() error { return reg.Serve(ctx, s.registrationDir) })
	}
	if s.healthPort != 0 {
		conn, err := sidecar.DialCSI(endpoint)
		if err != nil {
			return nil, err
		}
		h := &sidecar.Healthz{Checks: []sidecar.Check{sidecar.ProbeCheck(conn)}, Timeout: s.probeTimeout, Log: log}
		if reg != nil {
			h.Checks = append(h.Checks, func(context.Context) error { return reg.Err() })
		}
		l, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(s.healthPort)))
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("--health-port: %w", err)
		}
		g.Go(func() error {
			defer conn.Close()
			return h.Serve(ctx, l)
		})
	}
	return g.Wait, nil
}
