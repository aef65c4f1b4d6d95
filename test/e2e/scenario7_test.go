//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// cluster runs bin/cluster (hack/cluster) with args.
func cluster(t *testing.T, args ...string) {
	t.Helper()
	bin := os.Getenv("E2E_CLUSTER")
	if bin == "" {
		t.Fatal("E2E_CLUSTER is not set: this scenario needs the cluster of make e2e")
	}
	if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		t.Fatalf("cluster %v: %v\n%s", args, err, out)
	}
}

// fuseMountsBelow lists the FUSE mounts under the kubelet's pods directory.
func fuseMountsBelow(t *testing.T, dir string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) > 8 && strings.HasPrefix(f[4], dir) && strings.Contains(l, " - fuse") {
			out = append(out, f[4])
		}
	}
	return out
}

// readAheadKB is the kernel read-ahead of the mount at dir, in KiB.
func readAheadKB(t *testing.T, dir string) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev)))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// runningPod creates a pod and waits until it runs.
func (e *env) runningPod(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	e.createPod(t, pod)
	e.eventually(t, 3*time.Minute, "pod "+pod.Name+" running", func() (bool, error) {
		p, err := e.kube.CoreV1().Pods(pod.Namespace).Get(ctx(t), pod.Name, metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning, err
	})
}

// TestScenario7KubeletRestart: kubelet restarts while pods use MOUNT and
// MOUNT_CACHED volumes; the mounts keep serving, and deleting the pods
// afterwards leaves no mount or FUSE server behind.
func TestScenario7KubeletRestart(t *testing.T) {
	e := newEnv(t)
	ns := e.namespace(t, "s7")
	var claims []string
	for _, mode := range []string{"MOUNT", "MOUNT_CACHED"} {
		name := strings.ToLower(strings.ReplaceAll(mode, "_", "-"))
		sc := e.storageClass(t, map[string]string{"mode": mode}, corev1.PersistentVolumeReclaimDelete)
		e.pvc(t, ns, name, sc, corev1.ReadWriteMany, "")
		claims = append(claims, name)
		// Writes and reads a file every half second; any error ends the pod.
		e.runningPod(t, podSpec(ns, name, "i=0; while true; do i=$((i+1)); echo $i > /data/n.txt || exit 3; [ \"$(cat /data/n.txt)\" = $i ] || exit 4; sleep 0.5; done", claimVolume(name)))
	}
	before := fuseMountsBelow(t, "/var/lib/kubelet/pods/")
	if len(before) == 0 {
		t.Fatal("no FUSE mount under /var/lib/kubelet/pods while the pods run")
	}
	// The FUSE servers, in the mounter pod, raised each mount's kernel
	// read-ahead (through the chart's sysfs mount).
	for _, dir := range before {
		if kb := readAheadKB(t, dir); kb != "1024" {
			t.Errorf("%s: read_ahead_kb %s, want 1024", dir, kb)
		}
	}
	cluster(t, "restart", "kubelet")
	time.Sleep(20 * time.Second)
	for _, name := range claims {
		p, err := e.kube.CoreV1().Pods(ns).Get(ctx(t), name, metav1.GetOptions{})
		if err != nil || p.Status.Phase != corev1.PodRunning {
			t.Fatalf("pod %s after the kubelet restart: %v %v; log:\n%s", name, p.Status.Phase, err, e.podLog(t, p))
		}
	}
	for _, name := range claims {
		e.deletePod(t, ns, name)
	}
	e.eventually(t, 2*time.Minute, "FUSE mounts gone", func() (bool, error) {
		return len(fuseMountsBelow(t, "/var/lib/kubelet/pods/")) == 0, nil
	})
}
