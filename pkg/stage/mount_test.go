package stage

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/fuseproto"
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

// TestFuseConfigSecretsBounded: secrets up to fuseproto.MaxSecretBytes,
// of the bytes JSON writes longest and handed whole to the store's
// settings, make a config the FUSE server reads whole; one byte more is
// refused (fault.Invalid) before the stager reserves anything. Before, a
// secret with a large unused key made a config over the server's limit,
// and every start of the volume's server failed, the unstage's too.
func TestFuseConfigSecretsBounded(t *testing.T) {
	reg := store.Registry{"s3": store.Backend{Rclone: func(s store.Secrets, _ string) (map[string]string, error) {
		opts := map[string]string{"type": "s3"}
		for k, v := range s {
			opts[k] = v // the worst: every secret byte in the settings too
		}
		return opts, nil
	}}}
	req := Request{VolumeID: "v1", StagingPath: "/staging", StateDir: "/state",
		Handle: volume.Handle{Spec: volume.Spec{Store: "s3", Bucket: "b", Mode: volume.ModeMountCached}}}
	for _, extra := range []int{0, 1} {
		const keys = 4
		req.Secrets = map[string]string{}
		per := fuseproto.MaxSecretBytes / keys
		for i := range keys {
			name := fmt.Sprintf("k%d", i)
			n := per - len(name)
			if i == 0 {
				n += extra
			}
			req.Secrets[name] = strings.Repeat("\x01", n)
		}
		cfg, err := fuseConfig(req, reg, Settings{})
		if extra > 0 {
			if !errors.Is(err, fault.Invalid) || strings.Contains(err.Error(), "\x01") {
				t.Fatalf("secrets of %d bytes: %v, want fault.Invalid without the secret", fuseproto.MaxSecretBytes+1, err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("secrets of %d bytes: a config of %d bytes", fuseproto.MaxSecretBytes, len(data))
		if len(data) > fuseproto.MaxConfigBytes {
			t.Fatalf("secrets of %d bytes make a config of %d bytes, over the %d a server reads", fuseproto.MaxSecretBytes, len(data), fuseproto.MaxConfigBytes)
		}
	}
}
