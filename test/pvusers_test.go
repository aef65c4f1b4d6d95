package test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// pvServer answers the one API call the controller makes to the cluster,
// listing PersistentVolumes, from a list the test changes; client-go in
// the real binary talks to it through a kubeconfig.
type pvServer struct {
	mu  sync.Mutex
	pvs []corev1.PersistentVolume
}

func (s *pvServer) set(pvs ...corev1.PersistentVolume) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pvs = pvs
}

func (s *pvServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || r.URL.Path != "/api/v1/persistentvolumes" {
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	list := corev1.PersistentVolumeList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeList"}, Items: s.pvs}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(list)
}

// startPVServer serves pvs and returns a kubeconfig file that reaches it.
func startPVServer(t *testing.T) (*pvServer, string) {
	t.Helper()
	s := &pvServer{}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	path := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := `apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: "` + srv.URL + `"}}]
users: [{name: test, user: {}}]
contexts: [{name: test, context: {cluster: test, user: test}}]
current-context: test
`
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return s, path
}

func csiPV(name, handle string, dynamic bool) corev1.PersistentVolume {
	pv := corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PersistentVolumeSpec{
		PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "bucket.csi.io", VolumeHandle: handle}}}}
	if dynamic {
		pv.Annotations = map[string]string{"pv.kubernetes.io/provisioned-by": "bucket.csi.io"}
	}
	return pv
}

// TestStaticPVCountsAsBucketUser: a static PV that copied the handle of a
// live dynamic volume (persistent "false") is a user of the bucket: the
// dynamic volume's DeleteVolume answers FailedPrecondition naming it and
// deletes nothing, and the retry once it is gone deletes the bucket. The
// PersistentVolumes come from the cluster the controller is configured
// for (here a server answering the list call, reached by client-go).
func TestStaticPVCountsAsBucketUser(t *testing.T) {
	pvs, kubeconfig := startPVServer(t)
	s3, _, c := startAll(t, "--services", "controller", "--kubeconfig", kubeconfig)
	ctx := context.Background()
	vol, err := c.Controller.CreateVolume(ctx, createReq("pvc-dyn", map[string]string{"name": "shared-scratch", "persistent": "false"}, s3.Secrets()))
	if err != nil {
		t.Fatal(err)
	}
	id := vol.GetVolume().GetVolumeId()
	putRaw(t, s3.Client(), "shared-scratch", "result.txt", "keep me while a PV uses me")
	pvs.set(csiPV("pvc-dyn", id, true), csiPV("static-copy", id, false))
	del := &csi.DeleteVolumeRequest{VolumeId: id, Secrets: s3.Secrets()}
	for range 2 { // the refusal repeats: nothing was purged
		_, err = c.Controller.DeleteVolume(ctx, del)
		wantStatus(t, "DeleteVolume while a static PV uses the bucket", err, codes.FailedPrecondition, "static-copy")
		if got := keys(t, s3.Store(t), "shared-scratch"); !contains(got, "result.txt") {
			t.Fatalf("bucket lost its objects while in use: %v", got)
		}
	}
	pvs.set(csiPV("pvc-dyn", id, true))
	if _, err := c.Controller.DeleteVolume(ctx, del); err != nil {
		t.Fatalf("DeleteVolume once the static PV is gone: %v", err)
	}
	if err := s3.Store(t).HeadBucket(ctx, "shared-scratch"); err == nil {
		t.Fatal("bucket still there after its last user was deleted")
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
