//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// TestScenario10FailureReasons: a pod whose volume cannot be staged (wrong
// credentials; a bucket that does not exist) stays ContainerCreating, and
// its events (what kubectl describe pod shows) give the reason without the
// secret.
func TestScenario10FailureReasons(t *testing.T) {
	e := newEnv(t)
	ns := e.namespace(t, "s10")
	const wrongKey = "wrong-secret-e2e-0123456789"
	e.applySecret(t, driverNS, "e2e-wrong", e.access, wrongKey)
	bucket := e.createBucket(t, "e2e-fail")
	cases := []struct {
		name, source, secret string
		want                 []string // any of these in the event, lower case
	}{
		{"wrong-credentials", "s3://" + bucket, "e2e-wrong", []string{"signature", "denied", "credential", "forbidden"}},
		{"missing-bucket", "s3://e2e-no-such-bucket-" + suffix(), secretName, []string{"not found", "nosuchbucket", "does not exist", "notfound"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.staticPV(t, c.name+"-"+ns, c.source, "MOUNT", corev1.PersistentVolumeReclaimRetain, c.secret)
			e.pvc(t, ns, c.name, "", corev1.ReadWriteMany, c.name+"-"+ns)
			e.createPod(t, podSpec(ns, c.name, "true", claimVolume(c.name)))
			var events string
			e.eventually(t, 2*time.Minute, "FailedMount event", func() (bool, error) {
				events = e.events(t, ns, c.name)
				return strings.Contains(events, "FailedMount"), fmt.Errorf("events so far:\n%s", events)
			})
			t.Logf("events:\n%s", events)
			found := false
			for _, w := range c.want {
				found = found || strings.Contains(strings.ToLower(events), w)
			}
			if !found {
				t.Fatalf("events give none of the reasons %q:\n%s", c.want, events)
			}
			if strings.Contains(events, wrongKey) || strings.Contains(events, e.key) {
				t.Fatal("an event holds a secret key")
			}
			e.deletePod(t, ns, c.name)
			e.deletePVC(t, ns, c.name)
		})
	}
}
