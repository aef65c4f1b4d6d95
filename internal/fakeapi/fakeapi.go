// Package fakeapi is a minimal Kubernetes API server for tests of event
// recording: it answers GET of the PersistentVolumes it was given and
// keeps every event POSTed or PATCHed to it. Nothing else is served.
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
	pvs    map[string]types.UID
	events []corev1.Event
}

// Start runs a Server until Close.
func Start() *Server {
	s := &Server{pvs: map[string]types.UID{}}
	s.Server = httptest.NewServer(s)
	return s
}

// AddPV makes GET of PersistentVolume name answer with uid.
func (s *Server) AddPV(name string, uid types.UID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pvs[name] = uid
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
		name := strings.TrimPrefix(r.URL.Path, pvPath)
		s.mu.Lock()
		uid, ok := s.pvs[name]
		s.mu.Unlock()
		if !ok {
			notFound(w)
			return
		}
		_ = json.NewEncoder(w).Encode(corev1.PersistentVolume{TypeMeta: metav1.TypeMeta{Kind: "PersistentVolume", APIVersion: "v1"}, ObjectMeta: metav1.ObjectMeta{Name: name, UID: uid}})
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
