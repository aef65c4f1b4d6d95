// Package fakeapi is a minimal Kubernetes API server for tests of event
// recording: it answers GET of the PersistentVolumes and LIST (by
// namespace, with a spec.nodeName field selector) of the pods it was
// given, and keeps every event POSTed or PATCHed to it. Nothing else is
// served.
package fakeapi

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Server is a running fake API server.
type Server struct {
	*httptest.Server

	mu     sync.Mutex
	pvs    map[string]corev1.PersistentVolume
	pods   []corev1.Pod
	events []corev1.Event
}

// Start runs a Server until Close.
func Start() *Server {
	s := &Server{pvs: map[string]corev1.PersistentVolume{}}
	s.Server = httptest.NewServer(s)
	return s
}

// AddPV makes GET of PersistentVolume name answer with its UID and,
// when claim is not "", a claimRef to namespace/claim.
func (s *Server) AddPV(name string, uid types.UID, namespace, claim string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pv := corev1.PersistentVolume{TypeMeta: metav1.TypeMeta{Kind: "PersistentVolume", APIVersion: "v1"}, ObjectMeta: metav1.ObjectMeta{Name: name, UID: uid}}
	if claim != "" {
		pv.Spec.ClaimRef = &corev1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: namespace, Name: claim}
	}
	s.pvs[name] = pv
}

// AddPod adds a pod on node using claim, in phase.
func (s *Server) AddPod(namespace, name string, uid types.UID, node, claim string, phase corev1.PodPhase) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := corev1.Pod{TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"}, ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, UID: uid}}
	p.Spec.NodeName = node
	p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}}}
	p.Status.Phase = phase
	s.pods = append(s.pods, p)
}

// Events returns the events received so far (a PATCH, client-go's update
// of a repeated event, replaces the message and count of the first).
func (s *Server) Events() []corev1.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]corev1.Event(nil), s.events...)
}

// Kubeconfig writes a kubeconfig for the server into dir and returns its path.
func (s *Server) Kubeconfig(dir string) (string, error) {
	p := filepath.Join(dir, "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: fake, cluster: {server: %q}}]
users: [{name: fake, user: {}}]
contexts: [{name: fake, context: {cluster: fake, user: fake}}]
current-context: fake
`, s.URL)
	return p, os.WriteFile(p, []byte(cfg), 0o600)
}

// ServeHTTP answers the calls of an event recorder.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	const pvPath = "/api/v1/persistentvolumes/"
	switch {
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, pvPath):
		s.mu.Lock()
		pv, ok := s.pvs[strings.TrimPrefix(r.URL.Path, pvPath)]
		s.mu.Unlock()
		if !ok {
			notFound(w)
			return
		}
		_ = json.NewEncoder(w).Encode(pv)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/api/v1/namespaces/") && strings.HasSuffix(r.URL.Path, "/pods"):
		ns := strings.Split(r.URL.Path, "/")[4]
		node := strings.TrimPrefix(r.URL.Query().Get("fieldSelector"), "spec.nodeName=")
		list := corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}}
		s.mu.Lock()
		for _, p := range s.pods {
			if p.Namespace == ns && (node == "" || p.Spec.NodeName == node) {
				list.Items = append(list.Items, p)
			}
		}
		s.mu.Unlock()
		_ = json.NewEncoder(w).Encode(list)
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/events"):
		body, _ := io.ReadAll(r.Body)
		var e corev1.Event
		if err := json.Unmarshal(body, &e); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.events = append(s.events, e)
		s.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(body)
	case r.Method == http.MethodPatch && strings.Contains(r.URL.Path, "/events/"):
		name := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
		var patch corev1.Event
		body, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(body, &patch)
		s.mu.Lock()
		defer s.mu.Unlock()
		for i := range s.events {
			if s.events[i].Name == name {
				s.events[i].Count, s.events[i].Message = patch.Count, patch.Message
				_ = json.NewEncoder(w).Encode(s.events[i])
				return
			}
		}
		notFound(w)
	default:
		notFound(w)
	}
}

func notFound(w http.ResponseWriter) {
	w.WriteHeader(http.StatusNotFound)
	_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`))
}
