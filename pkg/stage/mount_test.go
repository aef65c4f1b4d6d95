package stage

import (
	"testing"

	"github.com/bucket-csi/bucket-csi/pkg/store"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// TestFuseConfigDebug: the driver's debug setting reaches the FUSE
// server's config, and only when set.
func TestFuseConfigDebug(t *testing.T) {
	reg := store.Registry{"s3": store.Backend{Rclone: func(store.Secrets, string) (map[string]string, error) {
		return map[string]string{"type": "s3"}, nil
	}}}
	req := Request{VolumeID: "v1", StagingPath: "/staging", StateDir: "/state",
		Handle: volume.Handle{Spec: volume.Spec{Store: "s3", Bucket: "b", Mode: volume.ModeMount}}}
	for _, debug := range []bool{false, true} {
		cfg, err := fuseConfig(req, reg, Settings{Debug: debug})
		if err != nil || cfg.Debug != debug {
			t.Fatalf("Settings.Debug %v: config %+v, %v", debug, cfg, err)
		}
	}
}
