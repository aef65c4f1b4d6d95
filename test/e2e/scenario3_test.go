//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func inlineVolume(source, secret string) corev1.Volume {
	v := corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{
		Driver: driverName, VolumeAttributes: map[string]string{"source": source}}}}
	if secret != "" {
		v.CSI.NodePublishSecretRef = &corev1.LocalObjectReference{Name: secret}
	}
	return v
}

// TestScenario3Inline: an inline ephemeral volume with a Secret in the
// pod's namespace reads and writes the bucket; one naming a store inline
// volumes may not use (gcs; the chart allows s3 here) leaves the pod
// waiting with the reason in its events, and no secret in them; a pod
// declaring more inline volumes than its namespace may have on the node,
// with forged namespaces in their attributes, is held with the cap named.
func TestScenario3Inline(t *testing.T) {
	e := newEnv(t)
	ns := e.namespace(t, "s3")
	e.applySecret(t, ns, "team-s3", e.access, e.key)
	bucket := e.createBucket(t, "e2e-inline")
	e.putObject(t, bucket, "in/hello.txt", "hello inline")
	out := e.runPod(t, podSpec(ns, "inline", "cat /data/hello.txt && echo && echo back > /data/back.txt", inlineVolume("s3://"+bucket+"/in", "team-s3")))
	if !strings.HasPrefix(out, "hello inline") {
		t.Fatalf("inline pod read %q", out)
	}
	e.deletePod(t, ns, "inline")
	if got, err := e.getObject(t, bucket, "in/back.txt"); err != nil || got != "back\n" {
		t.Fatalf("S3 in/back.txt = %q, %v", got, err)
	}

	refused := podSpec(ns, "refused", "true", inlineVolume("gs://"+bucket, "team-s3"))
	e.createPod(t, refused)
	var events string
	e.eventually(t, 2*time.Minute, "FailedMount event of the refused inline volume", func() (bool, error) {
		events = e.events(t, ns, "refused")
		return strings.Contains(events, "FailedMount"), nil
	})
	t.Logf("events of the refused pod:\n%s", events)
	if !strings.Contains(events, "gcs") || !strings.Contains(strings.ToLower(events), "inline") {
		t.Fatalf("the refusal does not say that store gcs is not allowed for inline volumes:\n%s", events)
	}
	if strings.Contains(events, e.key) {
		t.Fatal("an event holds the secret key")
	}
	e.deletePod(t, ns, "refused")

	// The node caps one namespace's inline volumes (the cluster sets
	// E2E_INLINE_PER_NAMESPACE). A pod declaring one more, each naming
	// another namespace in its attributes, is held: kubelet's own
	// pod.namespace overrides them (podInfoOnMount), so they all count
	// in the pod's namespace.
	limit, err := strconv.Atoi(os.Getenv("E2E_INLINE_PER_NAMESPACE"))
	if err != nil || limit < 1 {
		t.Fatalf("E2E_INLINE_PER_NAMESPACE %q: run through `make e2e` or hack/cluster exec", os.Getenv("E2E_INLINE_PER_NAMESPACE"))
	}
	capped := e.namespace(t, "s3cap")
	e.applySecret(t, capped, "team-s3", e.access, e.key)
	var vols []corev1.Volume
	for i := 0; i <= limit; i++ {
		v := inlineVolume("s3://"+bucket+"/in", "team-s3")
		v.Name = fmt.Sprintf("data%d", i)
		v.CSI.VolumeAttributes["csi.storage.k8s.io/pod.namespace"] = fmt.Sprintf("forged-%d", i)
		vols = append(vols, v)
	}
	e.createPod(t, podSpec(capped, "many", "true", vols...))
	want := fmt.Sprintf("namespace %q already has %d inline volumes", capped, limit)
	e.eventually(t, 2*time.Minute, "the refusal of the pod's inline volume past the cap", func() (bool, error) {
		events = e.events(t, capped, "many")
		return strings.Contains(events, want), nil
	})
	t.Logf("events of the pod past the cap:\n%s", events)
	if !strings.Contains(events, "--inline-volumes-per-namespace") || strings.Contains(events, "forged-") {
		t.Fatalf("the refusal does not name the flag, or names a forged namespace:\n%s", events)
	}
	p, err := e.kube.CoreV1().Pods(capped).Get(ctx(t), "many", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Status.Phase != corev1.PodPending {
		t.Fatalf("the pod past the cap is %s; want it held in Pending", p.Status.Phase)
	}
	e.deletePod(t, capped, "many")
}
