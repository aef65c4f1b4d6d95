//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/remotecommand"

	"github.com/bucket-csi/bucket-csi/test/testenv"
)

const (
	driverName   = "bucket.csi.io"
	driverNS     = "bucket-csi"
	secretName   = "e2e-s3"
	busybox      = "registry.k8s.io/e2e-test-images/busybox:1.37.0-1"
	scenarioMark = "bucket-csi-e2e"
)

// env is what every scenario uses: the cluster, the S3 server's address
// and keys, and an independent S3 client.
type env struct {
	kube                  kubernetes.Interface
	rest                  *rest.Config
	s3                    *s3.Client
	endpoint, access, key string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{endpoint: os.Getenv("E2E_S3_ENDPOINT"), access: os.Getenv("E2E_S3_ACCESS_KEY"), key: os.Getenv("E2E_S3_SECRET_KEY")}
	if os.Getenv("KUBECONFIG") == "" || e.endpoint == "" {
		t.Fatal("KUBECONFIG and E2E_S3_ENDPOINT must be set (run through `make e2e` or hack/cluster exec)")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
	if err != nil {
		t.Fatal(err)
	}
	e.kube, e.rest = kubernetes.NewForConfigOrDie(cfg), cfg
	e.s3 = testenv.S3Client(e.endpoint, e.access, e.key)
	// The driver's credentials for provisioning and staging.
	e.applySecret(t, driverNS, secretName, e.access, e.key)
	return e
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	return c
}

func suffix() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// applySecret creates or replaces an S3 credentials Secret.
func (e *env) applySecret(t *testing.T, ns, name, access, key string) {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		StringData: map[string]string{"accessKeyID": access, "secretAccessKey": key}}
	_, err := e.kube.CoreV1().Secrets(ns).Create(ctx(t), s, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		_, err = e.kube.CoreV1().Secrets(ns).Update(ctx(t), s, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}

// namespace creates a namespace for one scenario, deleted (and waited for)
// when it ends.
func (e *env) namespace(t *testing.T, name string) string {
	t.Helper()
	ns := fmt.Sprintf("e2e-%s-%s", name, suffix())
	_, err := e.kube.CoreV1().Namespaces().Create(ctx(t), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
		Labels: map[string]string{scenarioMark: "scenario"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c := context.Background()
		_ = e.kube.CoreV1().Namespaces().Delete(c, ns, metav1.DeleteOptions{})
		e.eventually(t, 3*time.Minute, "namespace "+ns+" deleted", func() (bool, error) {
			_, err := e.kube.CoreV1().Namespaces().Get(c, ns, metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
	})
	return ns
}

// storageClass creates a StorageClass with the driver's secret and params,
// removed when the test ends.
func (e *env) storageClass(t *testing.T, params map[string]string, reclaim corev1.PersistentVolumeReclaimPolicy) string {
	t.Helper()
	p := map[string]string{
		"csi.storage.k8s.io/provisioner-secret-name": secretName, "csi.storage.k8s.io/provisioner-secret-namespace": driverNS,
		"csi.storage.k8s.io/node-stage-secret-name": secretName, "csi.storage.k8s.io/node-stage-secret-namespace": driverNS,
	}
	for k, v := range params {
		p[k] = v
	}
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "e2e-" + suffix()}, Provisioner: driverName,
		Parameters: p, ReclaimPolicy: &reclaim}
	if _, err := e.kube.StorageV1().StorageClasses().Create(ctx(t), sc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = e.kube.StorageV1().StorageClasses().Delete(context.Background(), sc.Name, metav1.DeleteOptions{})
	})
	return sc.Name
}

// pvc creates a claim and waits until it is bound; it returns the PV name.
func (e *env) pvc(t *testing.T, ns, name, sc string, mode corev1.PersistentVolumeAccessMode, volumeName string) string {
	t.Helper()
	claim := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{mode}, StorageClassName: &sc,
			VolumeName: volumeName,
			Resources:  corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}}
	if _, err := e.kube.CoreV1().PersistentVolumeClaims(ns).Create(ctx(t), claim, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pv string
	e.eventually(t, 2*time.Minute, "claim "+name+" bound", func() (bool, error) {
		c, err := e.kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx(t), name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		pv = c.Spec.VolumeName
		return c.Status.Phase == corev1.ClaimBound, nil
	})
	return pv
}

// podSpec is a busybox pod running script with the given volumes mounted
// at /data (the first) and /data2 (a second one).
func podSpec(ns, name, script string, vols ...corev1.Volume) *corev1.Pod {
	grace := int64(1)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: corev1.PodSpec{
		RestartPolicy: corev1.RestartPolicyNever, TerminationGracePeriodSeconds: &grace, Volumes: vols,
		Containers: []corev1.Container{{Name: "c", Image: busybox, ImagePullPolicy: corev1.PullNever, Command: []string{"sh", "-c", script}}},
	}}
	for i, v := range vols {
		path := "/data"
		if i > 0 {
			path = fmt.Sprintf("/data%d", i+1)
		}
		pod.Spec.Containers[0].VolumeMounts = append(pod.Spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: v.Name, MountPath: path})
	}
	return pod
}

func claimVolume(claim string) corev1.Volume {
	return corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}}
}

// runPod creates pod, waits for it to succeed and returns its log; a
// failed pod fails the test with its log and events.
func (e *env) runPod(t *testing.T, pod *corev1.Pod) string {
	t.Helper()
	e.createPod(t, pod)
	return e.runningPodOutput(t, pod)
}

// runningPodOutput waits for an already created pod to succeed and returns
// its log; a failed pod fails the test with its log and events.
func (e *env) runningPodOutput(t *testing.T, pod *corev1.Pod) string {
	t.Helper()
	e.eventually(t, 4*time.Minute, "pod "+pod.Name+" finished", func() (bool, error) {
		p, err := e.kube.CoreV1().Pods(pod.Namespace).Get(ctx(t), pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if p.Status.Phase == corev1.PodFailed {
			t.Fatalf("pod %s failed: log:\n%s\nevents:\n%s", pod.Name, e.podLog(t, pod), e.events(t, pod.Namespace, pod.Name))
		}
		return p.Status.Phase == corev1.PodSucceeded, nil
	})
	return e.podLog(t, pod)
}

// exec runs argv in the pod's container (kubectl exec) and returns its
// standard output; a failure's error holds the standard error.
func (e *env) exec(t *testing.T, ns, pod string, argv ...string) (string, error) {
	t.Helper()
	req := e.kube.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: "c", Command: argv, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	ex, err := remotecommand.NewSPDYExecutor(e.rest, "POST", req.URL())
	if err != nil {
		return "", err
	}
	var stdout, stderr bytes.Buffer // written concurrently: one each
	if err := ex.StreamWithContext(ctx(t), remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr}); err != nil {
		return stdout.String(), fmt.Errorf("%v: %s", err, stderr.String())
	}
	return stdout.String(), nil
}

func (e *env) createPod(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	if _, err := e.kube.CoreV1().Pods(pod.Namespace).Create(ctx(t), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// deletePod deletes a pod and waits until it is gone (its volumes are
// unpublished by then).
func (e *env) deletePod(t *testing.T, ns, name string) {
	t.Helper()
	_ = e.kube.CoreV1().Pods(ns).Delete(ctx(t), name, metav1.DeleteOptions{})
	e.eventually(t, 3*time.Minute, "pod "+name+" gone", func() (bool, error) {
		_, err := e.kube.CoreV1().Pods(ns).Get(ctx(t), name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}

func (e *env) podLog(t *testing.T, pod *corev1.Pod) string {
	t.Helper()
	data, err := e.kube.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{}).DoRaw(ctx(t))
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	return string(data)
}

// events returns the messages of the events about object name in ns.
func (e *env) events(t *testing.T, ns, name string) string {
	t.Helper()
	list, err := e.kube.CoreV1().Events(ns).List(ctx(t), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, ev := range list.Items {
		fmt.Fprintf(&b, "%s %s: %s\n", ev.Type, ev.Reason, ev.Message)
	}
	return b.String()
}

// eventually polls cond every second until it holds, fails or timeout
// passes.
func (e *env) eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok {
			return
		}
		last = err
		time.Sleep(time.Second)
	}
	t.Fatalf("%s: not within %s (last error: %v)", what, timeout, last)
}

// S3 checks, with a client independent of the driver.

func (e *env) putObject(t *testing.T, bucket, key, body string) {
	t.Helper()
	if _, err := e.s3.PutObject(ctx(t), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader(body)}); err != nil {
		t.Fatal(err)
	}
}

func (e *env) getObject(t *testing.T, bucket, key string) (string, error) {
	t.Helper()
	out, err := e.s3.GetObject(ctx(t), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return "", err
	}
	defer out.Body.Close()
	var b bytes.Buffer
	_, err = io.Copy(&b, out.Body)
	return b.String(), err
}

func (e *env) bucketExists(t *testing.T, bucket string) bool {
	t.Helper()
	_, err := e.s3.HeadBucket(ctx(t), &s3.HeadBucketInput{Bucket: aws.String(bucket)})
	return err == nil
}

func (e *env) createBucket(t *testing.T, prefix string) string {
	t.Helper()
	b := prefix + "-" + suffix()
	if _, err := e.s3.CreateBucket(ctx(t), &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
		t.Fatal(err)
	}
	return b
}

// pvBucket is the bucket a PV's volume context names (CreateVolume puts
// it there).
func (e *env) pvBucket(t *testing.T, pv string) string {
	t.Helper()
	v, err := e.kube.CoreV1().PersistentVolumes().Get(ctx(t), pv, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v.Spec.CSI == nil || v.Spec.CSI.VolumeAttributes["bucket"] == "" {
		t.Fatalf("PV %s names no bucket: %+v", pv, v.Spec.CSI)
	}
	return v.Spec.CSI.VolumeAttributes["bucket"]
}

// pvGone waits until a PV is deleted.
func (e *env) pvGone(t *testing.T, pv string) {
	t.Helper()
	e.eventually(t, 2*time.Minute, "PV "+pv+" deleted", func() (bool, error) {
		_, err := e.kube.CoreV1().PersistentVolumes().Get(ctx(t), pv, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}

// deletePVC deletes a claim.
func (e *env) deletePVC(t *testing.T, ns, name string) {
	t.Helper()
	if err := e.kube.CoreV1().PersistentVolumeClaims(ns).Delete(ctx(t), name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}
