//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestScenario4Sharing: two pods on the node share a ReadWriteMany claim
// and each sees the other's file; a second pod on a ReadWriteOncePod claim
// is not started while the first runs.
func TestScenario4Sharing(t *testing.T) {
	e := newEnv(t)
	ns := e.namespace(t, "s4")
	sc := e.storageClass(t, map[string]string{"mode": "MOUNT"}, corev1.PersistentVolumeReclaimDelete)
	e.pvc(t, ns, "shared", sc, corev1.ReadWriteMany, "")
	// Each writes its file, then waits for the other's (MOUNT lists the
	// bucket again after dir-cache-time, 10s by default).
	script := func(me, other string) string {
		return "echo " + me + " > /data/" + me + ".txt; for i in $(seq 1 60); do [ -f /data/" + other + ".txt ] && cat /data/" + other + ".txt && exit 0; sleep 1; done; exit 1"
	}
	e.createPod(t, podSpec(ns, "pod-a", script("a", "b"), claimVolume("shared")))
	outB := e.runPod(t, podSpec(ns, "pod-b", script("b", "a"), claimVolume("shared")))
	outA := e.runPod(t, podSpec(ns, "pod-a-check", "cat /data/a.txt /data/b.txt", claimVolume("shared")))
	if outB != "a\n" || outA != "a\nb\n" {
		t.Fatalf("pod-b read %q, a third pod read %q", outB, outA)
	}

	e.pvc(t, ns, "once", sc, corev1.ReadWriteOncePod, "")
	e.createPod(t, podSpec(ns, "first", "sleep 3600", claimVolume("once")))
	e.eventually(t, 2*time.Minute, "first pod running", func() (bool, error) {
		p, err := e.kube.CoreV1().Pods(ns).Get(ctx(t), "first", metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning, err
	})
	e.createPod(t, podSpec(ns, "second", "true", claimVolume("once")))
	var events string
	e.eventually(t, time.Minute, "second pod refused", func() (bool, error) {
		events = e.events(t, ns, "second")
		return strings.Contains(events, "ReadWriteOncePod"), nil
	})
	time.Sleep(5 * time.Second)
	p, err := e.kube.CoreV1().Pods(ns).Get(ctx(t), "second", metav1.GetOptions{})
	if err != nil || p.Status.Phase != corev1.PodPending || p.Spec.NodeName != "" {
		t.Fatalf("second pod on a ReadWriteOncePod claim: phase %v node %q err %v", p.Status.Phase, p.Spec.NodeName, err)
	}
	t.Logf("second pod: %s", strings.TrimSpace(events))
}
