// Package metrics holds the driver's Prometheus collectors. Nothing here is
// registered globally: the caller owns a *prometheus.Registry, registers
// what it wants and serves it (Serve); tests build their own registries.
package metrics

import (
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// Ops counts CSI calls and their latency by method and gRPC code:
// bucket_csi_operations_total and bucket_csi_operation_duration_seconds.
// The method label is the RPC's short name (NodeStageVolume); the code
// label the gRPC code's name (OK, Unavailable). Both sets are bounded: the
// CSI methods the server registers and the 17 gRPC codes.
type Ops struct {
	calls   *prometheus.CounterVec
	seconds *prometheus.HistogramVec
}

// NewOps registers the CSI operation collectors with reg.
func NewOps(reg prometheus.Registerer) (*Ops, error) {
	o := &Ops{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bucket_csi_operations_total",
			Help: "CSI calls answered, by method and gRPC code.",
		}, []string{"method", "code"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "bucket_csi_operation_duration_seconds",
			Help: "Time to answer a CSI call, by method and gRPC code.",
			// From a fast probe to a NodeStage that waits out kubelet's
			// two minutes.
			Buckets: []float64{0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"method", "code"}),
	}
	if err := register(reg, o.calls, o.seconds); err != nil {
		return nil, err
	}
	return o, nil
}

// register registers every collector with reg, stopping at the first
// refusal.
func register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Observe records one answered call of fullMethod ("/csi.v1.Node/NodeStageVolume").
func (o *Ops) Observe(fullMethod string, err error, d time.Duration) {
	method := fullMethod[strings.LastIndex(fullMethod, "/")+1:]
	code := status.Code(err).String()
	o.calls.WithLabelValues(method, code).Inc()
	o.seconds.WithLabelValues(method, code).Observe(d.Seconds())
}

// Interceptor returns a unary server interceptor that observes every call.
// Install it outermost so it sees the final status the client receives.
func (o *Ops) Interceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := h(ctx, req)
		o.Observe(info.FullMethod, err, time.Since(start))
		return resp, err
	}
}
