package metrics

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestOpsInterceptor: each call through the interceptor adds one to its
// method and code, and one observation to the same latency series; the
// handler's answer passes through unchanged.
func TestOpsInterceptor(t *testing.T) {
	reg := prometheus.NewRegistry()
	ops, err := NewOps(reg)
	if err != nil {
		t.Fatal(err)
	}
	intercept := ops.Interceptor()
	call := func(method string, answer error) {
		info := &grpc.UnaryServerInfo{FullMethod: "/csi.v1.Node/" + method}
		resp, err := intercept(context.Background(), nil, info, func(context.Context, any) (any, error) { return "resp", answer })
		if resp != "resp" || err != answer {
			t.Fatalf("interceptor changed the answer: %v %v", resp, err)
		}
	}
	call("NodeStageVolume", nil)
	call("NodeStageVolume", nil)
	call("NodeStageVolume", status.Error(codes.Unavailable, "pending"))
	call("NodeUnstageVolume", status.Error(codes.Aborted, "busy"))
	want := `
# HELP bucket_csi_operations_total CSI calls answered, by method and gRPC code.
# TYPE bucket_csi_operations_total counter
bucket_csi_operations_total{code="Aborted",method="NodeUnstageVolume"} 1
bucket_csi_operations_total{code="OK",method="NodeStageVolume"} 2
bucket_csi_operations_total{code="Unavailable",method="NodeStageVolume"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "bucket_csi_operations_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(ops.seconds); n != 3 {
		t.Fatalf("latency series = %d, want 3", n)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "bucket_csi_operation_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			want := map[string]uint64{"OK": 2, "Unavailable": 1, "Aborted": 1}[labels["code"]]
			if got := m.GetHistogram().GetSampleCount(); got != want {
				t.Errorf("latency count %v = %d, want %d", labels, got, want)
			}
		}
	}
}

// TestOpsRegistersOnce: the collectors live in the caller's registry, so
// a second set in the same registry is refused and one in another is not.
func TestOpsRegistersOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := NewOps(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := NewOps(reg); err == nil {
		t.Fatal("second registration in one registry accepted")
	}
	if _, err := NewOps(prometheus.NewRegistry()); err != nil {
		t.Fatalf("a fresh registry refused: %v", err)
	}
}
