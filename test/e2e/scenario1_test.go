//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// TestScenario1DynamicPVC: a dynamic PVC per mode; a pod writes and a
// second pod reads; an independent S3 client sees what MOUNT and
// MOUNT_CACHED wrote and its own upload through COPY; the default keeps
// the bucket after the PVC is deleted, persistent "false" deletes it.
func TestScenario1DynamicPVC(t *testing.T) {
	e := newEnv(t)
	ns := e.namespace(t, "s1")
	for _, mode := range []string{"MOUNT", "MOUNT_CACHED", "COPY"} {
		t.Run(mode, func(t *testing.T) {
			lower := strings.ToLower(strings.ReplaceAll(mode, "_", "-"))
			sc := e.storageClass(t, map[string]string{"mode": mode}, corev1.PersistentVolumeReclaimDelete)
			pv := e.pvc(t, ns, lower, sc, corev1.ReadWriteMany, "")
			bucket := e.pvBucket(t, pv)
			if !e.bucketExists(t, bucket) {
				t.Fatalf("bucket %s of PV %s does not exist", bucket, pv)
			}
			e.putObject(t, bucket, "from-s3.txt", "uploaded by S3 "+mode)
			vol := claimVolume(lower)
			out := e.runPod(t, podSpec(ns, lower+"-writer", "cat /data/from-s3.txt && echo && echo written by pod "+mode+" > /data/from-pod.txt && sync", vol))
			if !strings.Contains(out, "uploaded by S3 "+mode) {
				t.Fatalf("writer pod did not read the object uploaded with S3: %q", out)
			}
			e.deletePod(t, ns, lower+"-writer")
			got, err := e.getObject(t, bucket, "from-pod.txt")
			switch mode {
			case "COPY": // writes stay on the node
				if err == nil {
					t.Fatalf("COPY uploaded a pod's write: %q", got)
				}
			default:
				if err != nil || got != "written by pod "+mode+"\n" {
					t.Fatalf("S3 object from-pod.txt = %q, %v", got, err)
				}
				out = e.runPod(t, podSpec(ns, lower+"-reader", "cat /data/from-pod.txt", vol))
				if out != "written by pod "+mode+"\n" {
					t.Fatalf("reader pod read %q", out)
				}
				e.deletePod(t, ns, lower+"-reader")
			}
			e.deletePVC(t, ns, lower)
			e.pvGone(t, pv)
			if !e.bucketExists(t, bucket) {
				t.Fatalf("the default (persistent) deleted bucket %s with its PVC", bucket)
			}
		})
	}
	t.Run("persistent=false", func(t *testing.T) {
		sc := e.storageClass(t, map[string]string{"mode": "MOUNT", "persistent": "false"}, corev1.PersistentVolumeReclaimDelete)
		pv := e.pvc(t, ns, "ephemeral-bucket", sc, corev1.ReadWriteMany, "")
		bucket := e.pvBucket(t, pv)
		e.runPod(t, podSpec(ns, "eph-writer", "echo x > /data/x", claimVolume("ephemeral-bucket")))
		e.deletePod(t, ns, "eph-writer")
		e.deletePVC(t, ns, "ephemeral-bucket")
		e.pvGone(t, pv)
		e.eventually(t, time.Minute, fmt.Sprintf("bucket %s deleted", bucket), func() (bool, error) { return !e.bucketExists(t, bucket), nil })
	})
}
