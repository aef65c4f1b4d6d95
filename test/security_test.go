package test

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bucket-csi/bucket-csi/pkg/store/s3store"
	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// inlineReq is NodePublish as kubelet sends it for an inline ephemeral
// volume: no staging path, pod info and ephemeral=true in the context.
func inlineReq(target string, attrs, secrets map[string]string, flags ...string) *csi.NodePublishVolumeRequest {
	vc := map[string]string{"csi.storage.k8s.io/ephemeral": "true", "csi.storage.k8s.io/pod.name": "p", "csi.storage.k8s.io/pod.namespace": "team-a"}
	for k, v := range attrs {
		vc[k] = v
	}
	return &csi.NodePublishVolumeRequest{VolumeId: "csi-0123abcd", TargetPath: target, VolumeCapability: testenv.MountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, flags...), VolumeContext: vc, Secrets: secrets}
}

// TestInlineVolumePolicy: inline volumes work with their own secret on an
// allowed store, and every attempt to go around the policy is refused.
func TestInlineVolumePolicy(t *testing.T) {
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t, "--inline-stores", "s3")
	ctx := context.Background()
	if err := s3.Store(t).CreateBucket(ctx, "shared-data"); err != nil {
		t.Fatal(err)
	}
	if err := s3.Store(t).PutObject(ctx, "shared-data", "a.txt", []byte("inline")); err != nil {
		t.Fatal(err)
	}
	work := drv.TempDir(t)
	target := filepath.Join(work, "pods", "uid", "volumes", "kubernetes.io~csi", "data", "mount")
	if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
		t.Fatal(err)
	}
	ok := map[string]string{"source": "s3://shared-data"}
	if _, err := c.Node.NodePublishVolume(ctx, inlineReq(target, ok, s3.Secrets())); err != nil {
		t.Fatalf("inline publish with the pod's secret: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(target, "a.txt")); err != nil || string(got) != "inline" {
		t.Fatalf("reading through the inline volume: %q %v", got, err)
	}
	if _, err := c.Node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "csi-0123abcd", TargetPath: target}); err != nil {
		t.Fatal(err)
	}
	if left := drv.Staged(t); len(left) != 0 {
		t.Fatalf("inline volume left staged after its unpublish: %+v", left)
	}
	for _, tc := range []struct {
		name string
		req  *csi.NodePublishVolumeRequest
		code codes.Code
	}{
		{"no secret: the driver's identity is not lent", inlineReq(target, ok, nil), codes.PermissionDenied},
		{"a secret without the store's keys", inlineReq(target, ok, map[string]string{"unrelated": "value"}), codes.PermissionDenied},
		{"mode COPY (not allowed by default)", inlineReq(target, map[string]string{"source": "s3://shared-data", "mode": "COPY"}, s3.Secrets()), codes.PermissionDenied},
		{"mode MOUNT_CACHED (not allowed by default)", inlineReq(target, map[string]string{"source": "s3://shared-data", "mode": "MOUNT_CACHED"}, s3.Secrets()), codes.PermissionDenied},
		{"store not allowed", inlineReq(target, map[string]string{"source": "gs://shared-data"}, map[string]string{"serviceAccountJSON": "{}"}), codes.PermissionDenied},
		{"endpoint attribute (link-local)", inlineReq(target, map[string]string{"source": "s3://shared-data", "endpoint": "http://169.254.169.254/"}, s3.Secrets()), codes.InvalidArgument},
		{"endpoint attribute (loopback)", inlineReq(target, map[string]string{"source": "s3://shared-data", "s3-endpoint": "http://127.0.0.1:1/"}, s3.Secrets()), codes.InvalidArgument},
		{"engine flag as mount option", inlineReq(target, ok, s3.Secrets(), "vfs-cache-mode=full"), codes.InvalidArgument},
		{"config path as mount option", inlineReq(target, ok, s3.Secrets(), "config=/etc/shadow"), codes.InvalidArgument},
		{"cache path attribute", inlineReq(target, map[string]string{"source": "s3://shared-data", "cache-dir": "/"}, s3.Secrets()), codes.InvalidArgument},
		{"creating a bucket inline", inlineReq(target, map[string]string{"name": "new-bucket"}, s3.Secrets()), codes.InvalidArgument},
		{"prefix escaping the bucket", inlineReq(target, map[string]string{"source": "s3://shared-data/../other"}, s3.Secrets()), codes.InvalidArgument},
		{"relative target", inlineReq("relative/mount", ok, s3.Secrets()), codes.InvalidArgument},
		{"target with ..", inlineReq(work+"/../../etc/mount", ok, s3.Secrets()), codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Node.NodePublishVolume(ctx, tc.req)
			if status.Code(err) != tc.code {
				t.Fatalf("got %v, want %v", err, tc.code)
			}
			for _, v := range tc.req.GetSecrets() {
				if len(v) > 3 && strings.Contains(status.Convert(err).Message(), v) {
					t.Fatal("the error message contains a secret")
				}
			}
		})
	}
	// Each line and key of a secret is masked on its own, at a cost per
	// pattern: a Secret of the 1 MiB Kubernetes allows is refused at the
	// gRPC edge, whose answer names its size, before any mask is built.
	for name, secret := range map[string]map[string]string{
		"a secret of many short lines": withSecret(s3.Secrets(), map[string]string{"notes": shortLines(70 << 10)}),
		"a secret of many keys":        withSecret(s3.Secrets(), manyKeys(65)),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := c.Node.NodePublishVolume(ctx, inlineReq(target, ok, secret))
			if msg := status.Convert(err).Message(); status.Code(err) != codes.InvalidArgument || !strings.Contains(msg, "keys and") || strings.Contains(msg, "v0000001") {
				t.Errorf("%v, want InvalidArgument from the gRPC edge naming the secret's size only", err)
			}
		})
	}
	if left := drv.Staged(t); len(left) != 0 {
		t.Fatalf("refused requests left state behind: %+v", left)
	}
	// Staging paths and volume IDs are checked as strictly.
	for _, tc := range []struct {
		name string
		req  *csi.NodeStageVolumeRequest
		code codes.Code
	}{
		{"staging with ..", &csi.NodeStageVolumeRequest{VolumeId: "v1:s3:Mps:-:shared-data", StagingTargetPath: work + "/../x", VolumeCapability: testenv.MountCap(rwx)}, codes.InvalidArgument},
		{"forged volume ID with ..", &csi.NodeStageVolumeRequest{VolumeId: "v1:s3:Mps:-:shared-data/../x", StagingTargetPath: work + "/s", VolumeCapability: testenv.MountCap(rwx)}, codes.NotFound},
		{"overlong volume ID", &csi.NodeStageVolumeRequest{VolumeId: "v1:s3:Mps:-:shared-data/" + strings.Repeat("a", 200), StagingTargetPath: work + "/s", VolumeCapability: testenv.MountCap(rwx)}, codes.NotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := c.Node.NodeStageVolume(ctx, tc.req); status.Code(err) != tc.code {
				t.Fatalf("got %v, want %v", err, tc.code)
			}
		})
	}
}

// TestInlineModes: --inline-modes lets an admin allow more modes for
// inline volumes; a mode left out stays refused with PermissionDenied
// saying how to allow it.
func TestInlineModes(t *testing.T) {
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t, "--inline-stores", "s3", "--inline-modes", "MOUNT,COPY")
	ctx := context.Background()
	if err := s3.Store(t).CreateBucket(ctx, "inline-modes"); err != nil {
		t.Fatal(err)
	}
	if err := s3.Store(t).PutObject(ctx, "inline-modes", "a.txt", []byte("copied")); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(drv.TempDir(t), "pods", "uid", "volumes", "kubernetes.io~csi", "data", "mount")
	if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
		t.Fatal(err)
	}
	_, err := c.Node.NodePublishVolume(ctx, inlineReq(target, map[string]string{"source": "s3://inline-modes", "mode": "MOUNT_CACHED"}, s3.Secrets()))
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "--inline-modes") || !strings.Contains(err.Error(), "COPY") {
		t.Fatalf("MOUNT_CACHED inline = %v, want PermissionDenied naming the allowed modes and --inline-modes", err)
	}
	req := inlineReq(target, map[string]string{"source": "s3://inline-modes", "mode": "COPY"}, s3.Secrets())
	for i := 0; ; i++ {
		_, err = c.Node.NodePublishVolume(ctx, req)
		if status.Code(err) != codes.Unavailable || i > 60 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("inline COPY with --inline-modes MOUNT,COPY: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(target, "a.txt")); err != nil || string(got) != "copied" {
		t.Fatalf("reading the inline COPY volume: %q %v", got, err)
	}
	if _, err := c.Node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: req.VolumeId, TargetPath: target}); err != nil {
		t.Fatal(err)
	}
	if left := drv.Staged(t); len(left) != 0 {
		t.Fatalf("inline volume left staged: %+v", left)
	}
}

// TestInlineVolumesOffByDefault: without --inline-stores no inline volume
// is served.
func TestInlineVolumesOffByDefault(t *testing.T) {
	s3, drv, c := startAll(t)
	target := filepath.Join(drv.TempDir(t), "mount")
	_, err := c.Node.NodePublishVolume(context.Background(), inlineReq(target, map[string]string{"source": "s3://any-bucket"}, s3.Secrets()))
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("inline publish without an allow-list = %v, want PermissionDenied", err)
	}
}

// TestInlineVolumesPerNamespaceCap: with --inline-volumes-per-namespace 1
// on the real plugin, a namespace's second inline volume answers
// ResourceExhausted naming the cap, while the first serves its file
// through FUSE and another namespace's volume stages; after the plugin is
// killed and restarted the count still holds (it comes from the node's
// records), and once the first is unpublished the second stages. Without
// the cap one namespace's pods could take every FUSE server place of the
// node: inline volumes need no PersistentVolumeClaim, so no quota.
func TestInlineVolumesPerNamespaceCap(t *testing.T) {
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t, "--inline-stores", "s3", "--inline-modes", "MOUNT,MOUNT_CACHED", "--inline-volumes-per-namespace", "1")
	ctx := context.Background()
	if err := s3.Store(t).CreateBucket(ctx, "per-ns"); err != nil {
		t.Fatal(err)
	}
	if err := s3.Store(t).PutObject(ctx, "per-ns", "a.txt", []byte("ns")); err != nil {
		t.Fatal(err)
	}
	work := drv.TempDir(t)
	req := func(id, ns string) *csi.NodePublishVolumeRequest {
		r := inlineReq(filepath.Join(work, id, "mount"), map[string]string{"source": "s3://per-ns"}, s3.Secrets())
		r.VolumeId, r.VolumeContext["csi.storage.k8s.io/pod.namespace"] = id, ns
		return r
	}
	// A MOUNT_CACHED volume with a wrong Secret is refused with a code
	// kubelet takes as final (it sends no unpublish after it): nothing of
	// it stays, and it holds no place of its namespace.
	wrong := req("csi-wrong-secret", "team-a")
	wrong.VolumeContext["mode"] = "MOUNT_CACHED"
	wrong.Secrets = s3.Secrets()
	wrong.Secrets[s3store.SecretSecretAccessKey] = "not-the-key"
	_, err := c.Node.NodePublishVolume(ctx, wrong)
	wantStatus(t, "an inline MOUNT_CACHED volume with a wrong secret", err, codes.PermissionDenied)
	if left := drv.Staged(t); len(left) != 0 {
		t.Fatalf("a refused inline volume left a stage: %+v", left)
	}
	first, second, other := req("csi-first", "team-a"), req("csi-second", "team-a"), req("csi-other", "team-b")
	for _, r := range []*csi.NodePublishVolumeRequest{first, other} {
		if _, err := c.Node.NodePublishVolume(ctx, r); err != nil {
			t.Fatalf("publish %s: %v", r.VolumeId, err)
		}
		if got, err := os.ReadFile(filepath.Join(r.TargetPath, "a.txt")); err != nil || string(got) != "ns" {
			t.Fatalf("reading through %s: %q %v", r.VolumeId, got, err)
		}
	}
	_, err = c.Node.NodePublishVolume(ctx, second)
	wantStatus(t, "a namespace's second inline volume", err, codes.ResourceExhausted, `namespace "team-a" already has 1 inline volumes`, "--inline-volumes-per-namespace")
	drv.Kill(syscall.SIGKILL)
	if err := drv.Restart(); err != nil {
		t.Fatal(err)
	}
	c = drv.Dial(t)
	_, err = c.Node.NodePublishVolume(ctx, second)
	wantStatus(t, "the second inline volume after a restart", err, codes.ResourceExhausted, "--inline-volumes-per-namespace")
	unpublishInline := func(r *csi.NodePublishVolumeRequest) {
		if _, err := c.Node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: r.VolumeId, TargetPath: r.TargetPath}); err != nil {
			t.Fatalf("unpublish %s: %v", r.VolumeId, err)
		}
	}
	unpublishInline(first)
	if _, err := c.Node.NodePublishVolume(ctx, second); err != nil {
		t.Fatalf("the second inline volume once the first is unpublished: %v", err)
	}
	unpublishInline(second)
	unpublishInline(other)
	if left := drv.Staged(t); len(left) != 0 {
		t.Fatalf("inline volumes left staged: %+v", left)
	}
}

// withSecret returns base with extra's keys added.
func withSecret(base, extra map[string]string) map[string]string {
	out := maps.Clone(base)
	maps.Copy(out, extra)
	return out
}

// shortLines is n bytes of distinct 7-byte lines.
func shortLines(n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "%06x\n", i)
	}
	return b.String()
}

// manyKeys is a secret of n keys with distinct 8-byte values.
func manyKeys(n int) map[string]string {
	out := map[string]string{}
	for i := range n {
		out[fmt.Sprintf("key%d", i)] = fmt.Sprintf("v%07d", i)
	}
	return out
}
