package test

import (
	"bytes"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/bucket-csi/bucket-csi/internal/localenv"
	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// strictDecode decodes every document of a multi-document YAML stream
// with client-go's scheme in strict mode: unknown or duplicate fields fail.
func strictDecode(t *testing.T, name string, data []byte) []runtime.Object {
	t.Helper()
	dec := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	var objs []runtime.Object
	for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
		if strings.TrimSpace(regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(doc, "")) == "" {
			continue
		}
		obj, _, err := dec.Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Errorf("%s document %d: %v", name, i, err)
			continue
		}
		objs = append(objs, obj)
	}
	return objs
}

var pinnedImage = regexp.MustCompile(`^[a-z0-9.-]+(/[a-z0-9._-]+)+:v?[0-9][0-9A-Za-z.-]*$`)

func checkImages(t *testing.T, name string, data []byte) {
	t.Helper()
	for _, m := range regexp.MustCompile(`(?m)^\s*(?:-\s*)?image:\s*"?([^"\s]+)`).FindAllSubmatch(data, -1) {
		img := string(m[1])
		if !pinnedImage.MatchString(img) || strings.HasSuffix(img, ":latest") {
			t.Errorf("%s: image %q is not pinned to a version", name, img)
		}
	}
}

func helm(t *testing.T, args ...string) []byte {
	t.Helper()
	bin, err := localenv.Binary("HELM_BIN", "helm")
	if err != nil {
		testenv.Missing(t, "%v", err)
	}
	var out, errb bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	if err := cmd.Run(); err != nil {
		t.Fatalf("helm %v: %v\n%s%s", args, err, out.String(), errb.String())
	}
	return out.Bytes()
}

// TestManifests: every manifest in deploy/ and examples/, and the chart
// rendered with default and with non-default values, decodes strictly;
// images are pinned; helm lint passes; deploy/ is the rendered chart.
func TestManifests(t *testing.T) {
	// The decoder must refuse an unknown field, or this test proves nothing.
	bad := []byte("apiVersion: storage.k8s.io/v1\nkind: CSIDriver\nmetadata: {name: x}\nspec: {attachRequired: false, attachRequird: true}\n")
	if _, _, err := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer().Decode(bad, nil, nil); err == nil {
		t.Fatal("strict decoding accepted an unknown field")
	}
	root := localenv.RepoRoot()
	files, _ := filepath.Glob(filepath.Join(root, "examples", "*.yaml"))
	more, _ := filepath.Glob(filepath.Join(root, "examples", "secrets", "*.yaml"))
	deploy, _ := filepath.Glob(filepath.Join(root, "deploy", "*.yaml"))
	files = append(append(files, more...), deploy...)
	if len(files) < 15 {
		t.Fatalf("found only %d manifests", len(files))
	}
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if len(strictDecode(t, f, data)) == 0 {
			t.Errorf("%s: no objects", f)
		}
		checkImages(t, f, data)
	}
	chart := filepath.Join(root, "charts", "bucket-csi")
	helm(t, "lint", "--strict", chart)
	def := helm(t, "template", "bucket-csi", chart, "--namespace", "bucket-csi")
	objs := strictDecode(t, "chart (defaults)", def)
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.GetObjectKind().GroupVersionKind().Kind]++
	}
	for kind, n := range map[string]int{"CSIDriver": 1, "Deployment": 1, "DaemonSet": 2, "ClusterRole": 3, "ServiceAccount": 2, "Secret": 1, "Service": 2} {
		if kinds[kind] != n {
			t.Errorf("chart renders %d %s, want %d (all: %v)", kinds[kind], kind, n, kinds)
		}
	}
	checkImages(t, "chart (defaults)", def)
	checkOwnershipKey(t, def, helm(t, "template", "bucket-csi", chart, "--namespace", "bucket-csi"))
	custom := helm(t, "template", "x", chart, "--namespace", "storage",
		"--set", "credentials.existingSecret=creds,inline.stores={s3,gcs},inline.modes={MOUNT,COPY},inline.ambientCredentials=true,inline.perNamespace=4",
		"--set", "stores.s3.endpoint=http://minio.storage:9000,stores.s3.pathStyle=true,stores.gcs.project=p1,stores.azure.account=acct,stores.r2.accountID=abc,stores.oci.region=us-ashburn-1,stores.oci.compartment=c1",
		"--set", "copy.keepCopies=true,copy.jobs=2,mountCached.cacheMaxSize=10737418240,image.tag=1.2.3,controller.replicas=3,logLevel=debug,node.kubeletDir=/var/lib/k0s/kubelet",
		"--set", "ownershipKey.existingSecret=own-key")
	strictDecode(t, "chart (custom values)", custom)
	for _, want := range []string{"--inline-stores=s3,gcs", "--inline-modes=MOUNT,COPY", "--inline-ambient-credentials", "--inline-volumes-per-namespace=4", "--s3-endpoint=http://minio.storage:9000", "--s3-path-style",
		"--gcs-project=p1", "--azure-account=acct", "--r2-account-id=abc", "--oci-compartment=c1", "--keep-copies", "--copy-jobs=2", "--cache-max-size=10737418240", "name: creds", "bucket-csi:1.2.3", "replicas: 3", "secretName: own-key",
		"--allowed-dirs=/var/lib/k0s/kubelet,/var/lib/bucket-csi"} {
		if !bytes.Contains(custom, []byte(want)) {
			t.Errorf("custom values render no %q", want)
		}
	}
	if bytes.Contains(custom, []byte("kind: Secret")) {
		t.Errorf("with ownershipKey.existingSecret the chart still renders a Secret")
	}
	// deploy/ is the chart with default values but no generated key (a
	// committed key would be everyone's): kustomize makes the Secret.
	manifest := helm(t, "template", "bucket-csi", chart, "--namespace", "bucket-csi", "--set", "ownershipKey.create=false")
	if bytes.Contains(manifest, []byte("kind: Secret")) {
		t.Errorf("deploy/bucket-csi.yaml would carry an ownership key")
	}
	committed, err := os.ReadFile(filepath.Join(root, "deploy", "bucket-csi.yaml"))
	if err != nil || !bytes.Equal(committed, manifest) {
		t.Errorf("deploy/bucket-csi.yaml is not the chart rendered with default values and ownershipKey.create=false; run `make manifests`")
	}
}

// checkOwnershipKey: the default rendering creates the ownership key
// Secret with a random key of 64 characters (another in every rendering:
// `helm upgrade` keeps the installed one through lookup, which a
// rendering without a cluster cannot show), mounts it read-only into the
// controller and passes the flag.
func checkOwnershipKey(t *testing.T, def, again []byte) {
	t.Helper()
	keyLine := regexp.MustCompile(`(?m)^  ownership\.key: (\S+)$`)
	m1, m2 := keyLine.FindSubmatch(def), keyLine.FindSubmatch(again)
	if m1 == nil || m2 == nil {
		t.Fatalf("the chart renders no ownership key Secret")
	}
	key, err := base64.StdEncoding.DecodeString(string(m1[1]))
	if err != nil || len(key) != 64 || bytes.Equal(m1[1], m2[1]) {
		t.Errorf("ownership key: %d bytes (%v), same in two renderings: %v", len(key), err, bytes.Equal(m1[1], m2[1]))
	}
	for _, want := range []string{"--ownership-key-file=/etc/bucket-csi/ownership/ownership.key", "mountPath: /etc/bucket-csi/ownership, readOnly: true",
		"secretName: bucket-csi-ownership-key", "helm.sh/resource-policy: keep"} {
		if !bytes.Contains(def, []byte(want)) {
			t.Errorf("default rendering has no %q", want)
		}
	}
}
