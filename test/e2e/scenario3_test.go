//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
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
// waiting with the reason in its events, and no secret in them.
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
}
