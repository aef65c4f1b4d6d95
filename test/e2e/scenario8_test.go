//go:build e2e

package e2e

import (
	"crypto/md5"
	"encoding/hex"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// volumeInUse reports whether the node still lists the PV's volume as in
// use (staged): kubelet drops it once NodeUnstageVolume returned.
func (e *env) volumeInUse(t *testing.T, pv string) bool {
	t.Helper()
	v, err := e.kube.CoreV1().PersistentVolumes().Get(ctx(t), pv, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := e.kube.CoreV1().Nodes().List(ctx(t), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes.Items {
		for _, u := range n.Status.VolumesInUse {
			if strings.HasSuffix(string(u), "^"+v.Spec.CSI.VolumeHandle) {
				return true
			}
		}
	}
	return false
}

// TestScenario8CachedFlush: a pod writes 200 MiB to a MOUNT_CACHED volume
// and is deleted at once; when kubelet releases the volume, every byte is
// already in the bucket (same size and MD5 as the pod wrote).
func TestScenario8CachedFlush(t *testing.T) {
	e := newEnv(t)
	ns := e.namespace(t, "s8")
	sc := e.storageClass(t, map[string]string{"mode": "MOUNT_CACHED"}, corev1.PersistentVolumeReclaimDelete)
	pv := e.pvc(t, ns, "cached", sc, corev1.ReadWriteMany, "")
	bucket := e.pvBucket(t, pv)
	out := e.runPod(t, podSpec(ns, "writer", "dd if=/dev/urandom of=/data/big bs=1M count=200 2>/dev/null && md5sum /data/big", claimVolume("cached")))
	want := strings.Fields(out)
	if len(want) != 2 {
		t.Fatalf("writer printed %q", out)
	}
	e.deletePod(t, ns, "writer")
	e.eventually(t, 5*time.Minute, "volume released", func() (bool, error) { return !e.volumeInUse(t, pv), nil })
	obj, err := e.s3.GetObject(ctx(t), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("big")})
	if err != nil {
		t.Fatalf("the volume was released before big reached the bucket: %v", err)
	}
	defer obj.Body.Close()
	h := md5.New()
	n, err := io.Copy(h, obj.Body)
	if err != nil || n != 200<<20 || hex.EncodeToString(h.Sum(nil)) != want[0] {
		t.Fatalf("bucket holds %d bytes (md5 %x, err %v) when the volume was released; the pod wrote 200 MiB with md5 %s", n, h.Sum(nil), err, want[0])
	}
}
