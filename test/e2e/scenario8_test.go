//go:build e2e

package e2e

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// staged reports whether the PV's volume is staged on the node: kubelet
// keeps the volume's staging directory
// (plugins/kubernetes.io/csi/<driver>/<sha256 of the handle>) until
// NodeUnstageVolume has succeeded, and removes it right after, so its
// absence means the driver released the volume. (node.status.volumesInUse
// lists only attachable volumes, which ours are not.)
func (e *env) staged(t *testing.T, pv string) bool {
	t.Helper()
	v, err := e.kube.CoreV1().PersistentVolumes().Get(ctx(t), pv, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(v.Spec.CSI.VolumeHandle))
	_, err = os.Stat(filepath.Join("/var/lib/kubelet/plugins/kubernetes.io/csi", driverName, hex.EncodeToString(sum[:])))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
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
	// The pod stays after writing (a pod that ends has its volumes released
	// by kubelet at once) and is deleted as soon as it has written.
	writer := podSpec(ns, "writer", "dd if=/dev/urandom of=/data/big bs=1M count=200 2>/dev/null && md5sum /data/big && sleep 3600", claimVolume("cached"))
	e.createPod(t, writer)
	var out string
	e.eventually(t, 4*time.Minute, "writer wrote", func() (bool, error) {
		out = e.podLog(t, writer)
		return strings.Contains(out, "/data/big"), nil
	})
	want := strings.Fields(out)
	if len(want) != 2 {
		t.Fatalf("writer printed %q", out)
	}
	if !e.staged(t, pv) {
		t.Fatal("the volume is not staged while the writer exists")
	}
	e.deletePod(t, ns, "writer")
	e.eventually(t, 5*time.Minute, "volume released", func() (bool, error) { return !e.staged(t, pv), nil })
	e.wantObject(t, bucket, "big", 200<<20, want[0])
}

// TestScenario8CachedFlushWhileS3Down: a pod writes to a MOUNT_CACHED volume
// while the S3 server is stopped and is deleted. As long as the server is
// down the volume is not released (NodeUnstageVolume keeps answering an
// error and kubelet keeps retrying); once the server is back the upload
// completes, the volume is released, and the bucket holds what the pod wrote.
func TestScenario8CachedFlushWhileS3Down(t *testing.T) {
	e := newEnv(t)
	ns := e.namespace(t, "s8down")
	sc := e.storageClass(t, map[string]string{"mode": "MOUNT_CACHED"}, corev1.PersistentVolumeReclaimDelete)
	pv := e.pvc(t, ns, "cached", sc, corev1.ReadWriteMany, "")
	bucket := e.pvBucket(t, pv)
	pod := podSpec(ns, "offline-writer", "sleep 3600", claimVolume("cached"))
	e.createPod(t, pod)
	e.eventually(t, 3*time.Minute, "writer running", func() (bool, error) {
		p, err := e.kube.CoreV1().Pods(ns).Get(ctx(t), pod.Name, metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning, err
	})
	// The directory's listing is fresh (dir-cache-time, 10 s) when the
	// server stops: creating a file needs it, and with the server down an
	// expired listing cannot be renewed.
	if _, err := e.exec(t, ns, pod.Name, "ls", "/data"); err != nil {
		t.Fatalf("listing the volume: %v", err)
	}
	cluster(t, "stop", "versitygw")
	serverUp := false
	t.Cleanup(func() {
		if !serverUp {
			cluster(t, "start", "versitygw")
		}
	})
	// Written while the server is down: the file goes to the cache only.
	out, err := e.exec(t, ns, pod.Name, "sh", "-c", "dd if=/dev/urandom of=/data/offline bs=1M count=20 && md5sum /data/offline")
	if err != nil {
		t.Fatalf("writing with the S3 server down: %v", err)
	}
	want := strings.Fields(out)
	if len(want) != 2 {
		t.Fatalf("writer printed %q", out)
	}
	if !e.staged(t, pv) {
		t.Fatal("the volume is not staged while the writer exists")
	}
	e.deletePod(t, ns, pod.Name)
	// kubelet retries NodeUnstageVolume with backoff; 90 s with the server
	// down is several attempts, and every one must keep the volume.
	for end := time.Now().Add(90 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Second) {
		if !e.staged(t, pv) {
			t.Fatal("the volume was released while the S3 server was down and offline was not uploaded")
		}
	}
	cluster(t, "start", "versitygw")
	serverUp = true
	e.eventually(t, 5*time.Minute, "volume released after the server came back", func() (bool, error) { return !e.staged(t, pv), nil })
	e.wantObject(t, bucket, "offline", 20<<20, want[0])
}

// wantObject fails unless the bucket holds key with size bytes and the
// MD5 the pod printed (md5sum's hex), right when the volume was released.
func (e *env) wantObject(t *testing.T, bucket, key string, size int64, md5hex string) {
	t.Helper()
	obj, err := e.s3.GetObject(ctx(t), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("the volume was released before %s reached the bucket: %v", key, err)
	}
	defer obj.Body.Close()
	h := md5.New()
	n, err := io.Copy(h, obj.Body)
	if err != nil || n != size || hex.EncodeToString(h.Sum(nil)) != md5hex {
		t.Fatalf("the bucket holds %d bytes of %s (md5 %x, err %v) when the volume was released; the pod wrote %d with md5 %s", n, key, h.Sum(nil), err, size, md5hex)
	}
}
