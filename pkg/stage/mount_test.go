package stage

import (
	"testing"

	"github.com/bucket-csi/bucket-csi/pkg/store"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// TestFuseConfigLogging: the driver's log level and format reach the FUSE
// server's config.
func TestFuseConfigLogging(t *testing.T) {
	reg := store.Registry{"s3": store.Backend{Rclone: func(store.Secrets, string) (map[string]string, error) {
		return map[string]string{"type": "s3"}, nil
	}}}
	req := Request{VolumeID: "v1", StagingPath: "/staging", StateDir: "/state",
		Handle: volume.Handle{Spec: volume.Spec{Store: "s3", Bucket: "b", Mode: volume.ModeMount}}}
	for _, level := range []string{"info", "debug"} {
		cfg, err := fuseConfig(req, reg, Settings{LogLevel: level, LogFormat: "json"})
		if err != nil || cfg.LogLevel != level || cfg.LogFormat != "json" {
			t.Fatalf("Settings.LogLevel %s: config %+v, %v", level, cfg, err)
		}
	}
}
