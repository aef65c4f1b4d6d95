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
// driver binary on its socket and real FUSE mounts: for S3 (versitygw) in
// every mode, for GCS (fake-gcs-server) and Azure (Azurite), and for OCI
// against the local stand-in (there is no OCI emulator). Idempotency checks are on (IdempotentCount 10, the default).
// No group is skipped by configuration: the groups that csi-sanity skips
// itself are those for capabilities the driver does not advertise
// (snapshots, expansion, controller publish, listing, health).
func TestSanity(t *testing.T) {
	if sanityRan {
		// Ginkgo allows one RunSpecs per process: under go test -count=N,
		// fail clearly (and clean up) instead of letting Ginkgo exit.
		t.Fatal("csi-sanity cannot run twice in one test process; use -count=1 (or -skip TestSanity)")
	}
	sanityRan = true
	testenv.RequireFUSE(t)
	s3 := testenv.StartS3(t)
	emu := testenv.StartEmulators(t)
	oci := testenv.StartOCI(t)
	drv := testenv.StartDriver(t, s3, append(emu.Args, oci.Args()...)...)
	work := drv.TempDir(t)
	for _, run := range []struct {
		store, mode string
		secrets     map[string]string
	}{
		{"s3", "MOUNT", s3.Secrets()},
		{"s3", "COPY", s3.Secrets()},
		{"s3", "MOUNT_CACHED", s3.Secrets()},
		{"gcs", "MOUNT", nil}, // the emulator needs no credentials
		{"gcs", "COPY", nil},
		{"azure", "MOUNT", testenv.AzureSecrets()},
		{"azure", "MOUNT_CACHED", testenv.AzureSecrets()},
		{"oci", "MOUNT", oci.Secrets()},
	} {
		dir := filepath.Join(work, run.store+"-"+run.mode)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		data, err := yaml.Marshal(map[string]map[string]string{
			"CreateVolumeSecret": run.secrets, "DeleteVolumeSecret": run.secrets,
			"NodeStageVolumeSecret": run.secrets, "ControllerValidateVolumeCapabilitiesSecret": run.secrets,
		})
		if err != nil {
			t.Fatal(err)
		}
		secretsFile := filepath.Join(dir, "secrets.yaml")
		if err := os.WriteFile(secretsFile, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := sanity.NewTestConfig()
		cfg.Address = drv.Socket
		cfg.TargetPath = filepath.Join(dir, "target")
		cfg.StagingPath = filepath.Join(dir, "staging")
		cfg.SecretsFile = secretsFile
		cfg.TestVolumeParameters = map[string]string{"mode": run.mode, "store": run.store}
		Describe(run.store+" "+run.mode, func() { sanity.GinkgoTest(&cfg) })
	}
	RegisterFailHandler(Fail)
	RunSpecs(t, "bucket-csi sanity")
}

// sanityRan is set once the Ginkgo suite has run in this process.
var sanityRan bool
