package test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bucket-csi/bucket-csi/internal/localenv"
	"github.com/bucket-csi/bucket-csi/pkg/redact"
	"github.com/bucket-csi/bucket-csi/pkg/store/azurestore"
	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// TestEngineErrorsRedacted: an Azure SAS token with a trailing line break
// (a Secret made from a file) makes the engine fail to parse the SAS URL
// and quote the whole URL, token included, in its error. Through the real
// binaries, in FUSE modes (the error leaves the FUSE server on its status
// line and in its log) and COPY (it leaves the copier in the plugin), the
// gRPC message keeps the engine's reason with the token masked, and no
// form of the token reaches the driver's log or a FUSE server's log.
func TestEngineErrorsRedacted(t *testing.T) {
	testenv.RequireFUSE(t)
	// No Azure server is needed: the SAS URL is refused before any request.
	_, drv, c := startAll(t, "--azure-account", localenv.AzuriteAccount, "--azure-endpoint", "http://127.0.0.1:9/{account}")
	sas := "sv=2022-11-02&ss=b&srt=sco&sp=rwdlac&se=2030-01-01T00:00:00Z&spr=https,http&sig=ab%2Bcd%3D+/sIgNaTuRe0123456789%3D\n"
	secrets := map[string]string{azurestore.SecretSASToken: sas}
	for _, mode := range []string{"K", "M", "C"} {
		t.Run(mode, func(t *testing.T) {
			id := "v1:azure:" + mode + "ps:-:data"
			staging := filepath.Join(drv.TempDir(t), "staging")
			if err := os.MkdirAll(staging, 0o750); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			req := &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: testenv.MountCap(rwx), Secrets: secrets}
			var err error
			for i := 0; i < 20; i++ {
				_, err = c.Node.NodeStageVolume(ctx, req)
				// COPY answers Unavailable "copying" while its job runs.
				if err == nil || !strings.Contains(err.Error(), "copying data:") {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			msg := status.Convert(err).Message()
			if status.Code(err) != codes.Unavailable || !strings.Contains(msg, "invalid control character in URL") || !strings.Contains(msg, redact.Mask) {
				t.Fatalf("got %v; want Unavailable with the engine's reason and the token masked", err)
			}
			for _, f := range testenv.SecretForms(sas) {
				if strings.Contains(msg, f) {
					t.Fatalf("the gRPC message holds the token (as %q): %s", f, msg)
				}
			}
			if strings.Contains(msg, "sIgNaTuRe") {
				t.Fatalf("the gRPC message holds the signature: %s", msg)
			}
		})
	}
	logs, _ := filepath.Glob(filepath.Join(drv.StateDir, "volumes", "*", "mounter.log"))
	if len(logs) == 0 {
		t.Fatal("no FUSE server log was kept to check (the MOUNT_CACHED volume's state is kept after a failed stage)")
	}
	for _, l := range logs {
		data, _ := os.ReadFile(l)
		if !strings.Contains(string(data), redact.Mask) {
			t.Errorf("%s does not show the masked engine error: %s", l, data)
		}
	}
	if !strings.Contains(drv.Log.String(), redact.Mask) {
		t.Error("the driver log does not show the masked engine error")
	}
	drv.AssertNoSecret(t, sas)
	if strings.Contains(drv.Log.String(), "sIgNaTuRe") {
		t.Error("the driver log holds the signature")
	}
}
