//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestScenario6PluginRestartAndUpgrade: while a pod writes and reads its
// MOUNT volume continuously, the node plugin pod is deleted (its DaemonSet
// starts a new one) and the chart is upgraded with a changed value; the
// pod sees no I/O error.
func TestScenario6PluginRestartAndUpgrade(t *testing.T) {
	e := newEnv(t)
	ns := e.namespace(t, "s6")
	sc := e.storageClass(t, map[string]string{"mode": "MOUNT"}, corev1.PersistentVolumeReclaimDelete)
	e.pvc(t, ns, "io", sc, corev1.ReadWriteMany, "")
	e.runningPod(t, podSpec(ns, "io", "i=0; while true; do i=$((i+1)); echo $i > /data/n.txt || echo IOERR write $i; [ \"$(cat /data/n.txt)\" = $i ] || echo IOERR read $i; sleep 0.2; done", claimVolume("io")))

	sel := metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=bucket-csi,app.kubernetes.io/component=node"}
	if err := e.kube.CoreV1().Pods(driverNS).DeleteCollection(ctx(t), metav1.DeleteOptions{}, sel); err != nil {
		t.Fatal(err)
	}
	e.waitNodePluginReady(t, sel)
	helm := exec.Command("helm", "upgrade", "bucket-csi", os.Getenv("E2E_CHART"), "--namespace", driverNS, "--reuse-values",
		"--set", "logLevel=debug", "--wait", "--timeout", "3m")
	helm.Env = append(os.Environ(), "HOME="+t.TempDir())
	if out, err := helm.CombinedOutput(); err != nil {
		t.Fatalf("helm upgrade: %v\n%s", err, out)
	}
	e.waitNodePluginReady(t, sel)
	time.Sleep(10 * time.Second)
	p, err := e.kube.CoreV1().Pods(ns).Get(ctx(t), "io", metav1.GetOptions{})
	if err != nil || p.Status.Phase != corev1.PodRunning {
		t.Fatalf("I/O pod: %v %v", p.Status.Phase, err)
	}
	if log := e.podLog(t, p); strings.Contains(log, "IOERR") {
		t.Fatalf("I/O errors in the pod during the restart and upgrade:\n%s", log)
	}
	e.deletePod(t, ns, "io")
}

// waitNodePluginReady waits until one node plugin pod is running and ready.
func (e *env) waitNodePluginReady(t *testing.T, sel metav1.ListOptions) {
	t.Helper()
	e.eventually(t, 3*time.Minute, "node plugin ready", func() (bool, error) {
		pods, err := e.kube.CoreV1().Pods(driverNS).List(ctx(t), sel)
		if err != nil || len(pods.Items) != 1 {
			return false, err
		}
		p := pods.Items[0]
		if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
			return false, nil
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
}
