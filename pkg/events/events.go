// Package events tells Kubernetes users, in `kubectl describe` of their
// pod or PersistentVolume, why a volume waits or failed: a COPY's
// progress, uploads a MOUNT_CACHED unstage waits for, a FUSE server that
// was restarted, an inline volume or credentials refused.
//
// Contract: a Recorder never blocks its caller on the API server (events
// are queued and sent in the background), and is rate-limited (client-go's
// spam filter and aggregation, plus Limiter for recurring ones). Messages
// are what the caller passes: callers mask them with pkg/redact, so no
// secret reaches an event. Without a cluster the Recorder is Nop.
package events

import (
	"sync"
	"time"
)

// Ref names the object an event is about.
type Ref struct {
	// Kind is "Pod" or "PersistentVolume".
	Kind      string
	Namespace string
	Name      string
	// UID, when known, makes the event show in `kubectl describe`
	// (which selects events by the object's UID).
	UID string
	// WaitingPods, for a PersistentVolume, records the event also on
	// the pods of this node that use its claim and have not started
	// (they wait for the volume): `kubectl describe pod` then says why.
	WaitingPods bool
}

// Zero reports whether r names no object (the event is dropped).
func (r Ref) Zero() bool { return r.Kind == "" || r.Name == "" }

// Pod is the Ref of a pod.
func Pod(namespace, name, uid string) Ref {
	return Ref{Kind: "Pod", Namespace: namespace, Name: name, UID: uid}
}

// PV is the Ref of a PersistentVolume ("" gives the zero Ref); see also
// Ref.WaitingPods.
func PV(name string) Ref {
	if name == "" {
		return Ref{}
	}
	return Ref{Kind: "PersistentVolume", Name: name}
}

// Recorder records events.
type Recorder interface {
	// Event records an event about ref: a warning or a normal one, with
	// a CamelCase reason and a message free of secrets. A zero ref is
	// ignored.
	Event(ref Ref, warning bool, reason, message string)
}

// Nop records nothing: a driver without a cluster.
type Nop struct{}

// Event does nothing.
func (Nop) Event(Ref, bool, string, string) {}

// Limiter lets a recurring event through at most once per Every for each
// key; safe for concurrent use. The zero Limiter lets everything through.
type Limiter struct {
	Every time.Duration

	mu   sync.Mutex
	last map[string]time.Time
}

// Allow reports whether the event with key may be recorded at now, and if
// so counts it.
func (l *Limiter) Allow(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.last[key]; ok && now.Sub(t) < l.Every {
		return false
	}
	if l.last == nil {
		l.last = map[string]time.Time{}
	}
	l.last[key] = now
	return true
}

// Forget drops key, so its next event goes through at once.
func (l *Limiter) Forget(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.last, key)
}
