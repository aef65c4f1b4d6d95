//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestScenario9LargeCopy: a COPY volume of a bucket large enough that
// staging takes a while: the pod waits in ContainerCreating and starts
// with every object present.
func TestScenario9LargeCopy(t *testing.T) {
	e := newEnv(t)
	ns := e.namespace(t, "s9")
	bucket := e.createBucket(t, "e2e-large")
	const objects = 8000
	body := bytes.Repeat([]byte("x"), 64<<10)
	var wg sync.WaitGroup
	errs := make(chan error, objects)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < objects; i += 16 {
				_, err := e.s3.PutObject(ctx(t), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(fmt.Sprintf("d%02d/f%05d", i%40, i)), Body: bytes.NewReader(body)})
				if err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// COPY through a static PV: inline volumes are MOUNT-only by default.
	pvName := "large-" + ns
	e.staticPV(t, pvName, "s3://"+bucket, "COPY", corev1.PersistentVolumeReclaimRetain, secretName)
	e.pvc(t, ns, "large", "", corev1.ReadWriteMany, pvName)
	v := claimVolume("large")
	pod := podSpec(ns, "copy", "find /data -type f | wc -l", v)
	start := time.Now()
	e.createPod(t, pod)
	sawCreating := false
	e.eventually(t, 10*time.Minute, "copy pod finished", func() (bool, error) {
		p, err := e.kube.CoreV1().Pods(ns).Get(ctx(t), "copy", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, s := range p.Status.ContainerStatuses {
			if s.State.Waiting != nil && s.State.Waiting.Reason == "ContainerCreating" {
				sawCreating = true
			}
		}
		if p.Status.Phase == corev1.PodFailed {
			t.Fatalf("copy pod failed: %s", e.podLog(t, p))
		}
		return p.Status.Phase == corev1.PodSucceeded, nil
	})
	t.Logf("pod finished %s after creation (ContainerCreating seen: %v)", time.Since(start).Round(time.Second), sawCreating)
	if out := strings.TrimSpace(e.podLog(t, pod)); out != fmt.Sprint(objects) {
		t.Fatalf("the pod saw %s files, want %d", out, objects)
	}
}
