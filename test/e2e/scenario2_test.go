//go:build e2e

package e2e

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// staticPV creates a PV for an existing bucket, deleted when the test ends.
func (e *env) staticPV(t *testing.T, name, source, mode string, reclaim corev1.PersistentVolumeReclaimPolicy, secret string) {
	t.Helper()
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PersistentVolumeSpec{
		Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
		AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
		PersistentVolumeReclaimPolicy: reclaim,
		PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
			Driver: driverName, VolumeHandle: name, VolumeAttributes: map[string]string{"source": source, "mode": mode},
			NodeStageSecretRef: &corev1.SecretReference{Name: secret, Namespace: driverNS}}},
	}}
	if _, err := e.kube.CoreV1().PersistentVolumes().Create(ctx(t), pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.kube.CoreV1().PersistentVolumes().Delete(ctx(t), name, metav1.DeleteOptions{}) })
}

// TestScenario2StaticPV: a static PV for an existing bucket, with reclaim
// Retain and with Delete: pods read and write it, and the bucket and its
// objects outlive the PVC and the PV either way.
func TestScenario2StaticPV(t *testing.T) {
	e := newEnv(t)
	ns := e.namespace(t, "s2")
	for _, reclaim := range []corev1.PersistentVolumeReclaimPolicy{corev1.PersistentVolumeReclaimRetain, corev1.PersistentVolumeReclaimDelete} {
		t.Run(string(reclaim), func(t *testing.T) {
			bucket := e.createBucket(t, "e2e-static")
			e.putObject(t, bucket, "existing.txt", "was there before")
			name := "static-" + suffix()
			e.staticPV(t, name, "s3://"+bucket, "MOUNT", reclaim, secretName)
			e.pvc(t, ns, name, "", corev1.ReadWriteMany, name)
			out := e.runPod(t, podSpec(ns, name, "cat /data/existing.txt && echo new > /data/new.txt", claimVolume(name)))
			if out != "was there before" {
				t.Fatalf("pod read %q", out)
			}
			e.deletePod(t, ns, name)
			e.deletePVC(t, ns, name)
			if reclaim == corev1.PersistentVolumeReclaimDelete {
				e.pvGone(t, name)
			} else {
				_ = e.kube.CoreV1().PersistentVolumes().Delete(ctx(t), name, metav1.DeleteOptions{})
				e.pvGone(t, name)
			}
			for _, key := range []string{"existing.txt", "new.txt"} {
				if _, err := e.getObject(t, bucket, key); err != nil {
					t.Fatalf("after the PV (%s) was deleted, %s/%s: %v", reclaim, bucket, key, err)
				}
			}
		})
	}
}
