//go:build e2e

package e2e

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestScenario5FSGroup: as the README says, the node advertises
// VOLUME_MOUNT_GROUP, so a pod's fsGroup becomes the group of the files in
// its mount, group-writable: a pod running as a non-root user with fsGroup
// writes, and sees its files in that group.
func TestScenario5FSGroup(t *testing.T) {
	e := newEnv(t)
	ns := e.namespace(t, "s5")
	for _, mode := range []string{"MOUNT", "MOUNT_CACHED"} {
		t.Run(mode, func(t *testing.T) {
			name := strings.ToLower(strings.ReplaceAll(mode, "_", "-"))
			sc := e.storageClass(t, map[string]string{"mode": mode}, corev1.PersistentVolumeReclaimDelete)
			e.pvc(t, ns, name, sc, corev1.ReadWriteMany, "")
			pod := podSpec(ns, name, "id -u; echo hi > /data/mine.txt && stat -c '%g %A' /data/mine.txt /data", claimVolume(name))
			uid, fsGroup := int64(1000), int64(2000)
			pod.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: &uid, RunAsGroup: &uid, FSGroup: &fsGroup}
			out := e.runPod(t, pod)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 3 || lines[0] != "1000" {
				t.Fatalf("pod output %q", out)
			}
			for _, l := range lines[1:] {
				f := strings.Fields(l)
				if len(f) != 2 || f[0] != "2000" || len(f[1]) < 7 || f[1][5] != 'w' {
					t.Fatalf("want group 2000, group-writable; stat says %q (all: %q)", l, out)
				}
			}
		})
	}
}
