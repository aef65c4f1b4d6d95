package events

import (
	"context"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
)

// Kube records events in a cluster through client-go's event broadcaster.
type Kube struct {
	cs          kubernetes.Interface
	broadcaster record.EventBroadcaster
	recorder    record.EventRecorder
	log         *slog.Logger

	mu   sync.Mutex
	uids map[string]string // PersistentVolume name -> UID
}

// NewKube returns a Recorder sending events as component (e.g.
// "bucket-csi-node") from host to the cluster of cs. Stop it on exit.
func NewKube(cs kubernetes.Interface, component, host string, log *slog.Logger) *Kube {
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})
	return &Kube{
		cs:          cs,
		broadcaster: b,
		recorder:    b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: component, Host: host}),
		log:         log,
		uids:        map[string]string{},
	}
}

// Event queues the event; the broadcaster sends it in the background.
// A PersistentVolume's UID is looked up once (by name, in the background)
// so the event shows in `kubectl describe pv`; without it the event is
// still sent.
func (k *Kube) Event(ref Ref, warning bool, reason, message string) {
	if ref.Zero() {
		return
	}
	if ref.Kind == "PersistentVolume" && ref.UID == "" {
		go func() {
			ref.UID = k.pvUID(ref.Name)
			k.send(ref, warning, reason, message)
		}()
		return
	}
	k.send(ref, warning, reason, message)
}

// send hands the event to the broadcaster.
func (k *Kube) send(ref Ref, warning bool, reason, message string) {
	typ := corev1.EventTypeNormal
	if warning {
		typ = corev1.EventTypeWarning
	}
	obj := &corev1.ObjectReference{Kind: ref.Kind, APIVersion: "v1", Namespace: ref.Namespace, Name: ref.Name, UID: types.UID(ref.UID)}
	k.recorder.Event(obj, typ, reason, message)
	k.log.Debug("event", "kind", ref.Kind, "namespace", ref.Namespace, "name", ref.Name, "reason", reason, "message", message)
}

// pvUID returns the UID of PersistentVolume name ("" if it cannot be read).
func (k *Kube) pvUID(name string) string {
	k.mu.Lock()
	uid, ok := k.uids[name]
	k.mu.Unlock()
	if ok {
		return uid
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	pv, err := k.cs.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		k.log.Debug("event: reading the PersistentVolume's UID", "pv", name, "err", err)
		return ""
	}
	k.mu.Lock()
	k.uids[name] = string(pv.UID)
	k.mu.Unlock()
	return string(pv.UID)
}

// Stop sends what is queued (briefly) and stops the broadcaster.
func (k *Kube) Stop() { k.broadcaster.Shutdown() }
