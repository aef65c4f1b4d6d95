package driver

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestOversizedSecretRefusedFirst: a request whose secret holds more than
// maxSecretKeys keys or maxSecretBytes bytes is answered InvalidArgument
// naming sizes only, and its handler (every mask of the secret is built
// there or after it) never runs; one at the limits reaches the handler.
func TestOversizedSecretRefusedFirst(t *testing.T) {
	e := newEnv(t)
	lines := func(n int) string {
		var b strings.Builder
		for i := 0; b.Len() < n; i++ {
			fmt.Fprintf(&b, "%06x\n", i)
		}
		return b.String()
	}
	keys := func(n int) map[string]string {
		out := map[string]string{}
		for i := range n {
			out[fmt.Sprintf("k%02d", i)] = fmt.Sprintf("value-%04d", i)
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		secrets map[string]string
		refused bool
	}{
		{"many keys", keys(maxSecretKeys + 1), true},
		{"many bytes", map[string]string{"notes": lines(maxSecretBytes)}, true},
		{"at the key limit", keys(maxSecretKeys), false},
		{"at the byte limit", map[string]string{"notes": lines(maxSecretBytes)[:maxSecretBytes-len("notes")]}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ran := false
			h := func(context.Context, any) (any, error) { ran = true; return &csi.NodePublishVolumeResponse{}, nil }
			req := &csi.NodePublishVolumeRequest{VolumeId: "v", Secrets: tc.secrets}
			_, err := e.d.intercept(context.Background(), req, &grpc.UnaryServerInfo{FullMethod: "/csi.v1.Node/NodePublishVolume"}, h)
			if !tc.refused {
				if err != nil || !ran {
					t.Fatalf("intercept = %v, handler ran %v; want the handler's answer", err, ran)
				}
				return
			}
			if status.Code(err) != codes.InvalidArgument || ran {
				t.Fatalf("intercept = %v, handler ran %v; want InvalidArgument before the handler", err, ran)
			}
			for _, v := range tc.secrets {
				if strings.Contains(err.Error(), strings.TrimSpace(v[:min(len(v), 10)])) {
					t.Fatalf("the refusal quotes the secret: %v", err)
				}
			}
		})
	}
}
