package test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"gopkg.in/yaml.v2"

	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// TestSanity runs the whole csi-sanity suite, in-process, against the real
// driver binary on its socket, a real S3 server and real FUSE mounts, once
// per mode. Idempotency checks are on (IdempotentCount 10, the default).
// No group is skipped by configuration: the groups that csi-sanity skips
// itself are those for capabilities the driver does not advertise
// (snapshots, expansion, controller publish, listing, health).
func TestSanity(t *testing.T) {
	testenv.RequireFUSE(t)
	s3 := testenv.StartS3(t)
	drv := testenv.StartDriver(t, s3)

	secrets := map[string]map[string]string{
		"CreateVolumeSecret":                         s3.Secrets(),
		"DeleteVolumeSecret":                         s3.Secrets(),
		"NodeStageVolumeSecret":                      s3.Secrets(),
		"ControllerValidateVolumeCapabilitiesSecret": s3.Secrets(),
	}
	data, err := yaml.Marshal(secrets)
	if err != nil {
		t.Fatal(err)
	}
	work := drv.TempDir(t)
	secretsFile := filepath.Join(work, "secrets.yaml")
	if err := os.WriteFile(secretsFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, mode := range sanityModes {
		cfg := sanity.NewTestConfig()
		cfg.Address = drv.Socket
		cfg.TargetPath = filepath.Join(work, mode, "target")
		cfg.StagingPath = filepath.Join(work, mode, "staging")
		cfg.SecretsFile = secretsFile
		cfg.TestVolumeParameters = map[string]string{"mode": mode}
		if err := os.MkdirAll(filepath.Join(work, mode), 0o755); err != nil {
			t.Fatal(err)
		}
		Describe("mode "+mode, func() { sanity.GinkgoTest(&cfg) })
	}
	RegisterFailHandler(Fail)
	RunSpecs(t, "bucket-csi sanity")
}

// sanityModes are the modes the sanity suite runs for.
var sanityModes = []string{"MOUNT", "COPY", "MOUNT_CACHED"}
