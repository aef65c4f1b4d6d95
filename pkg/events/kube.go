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

	host string

	mu  sync.Mutex
	pvs map[string]pvInfo // by PersistentVolume name
}

// pvInfo is what events need of a PersistentVolume.
type pvInfo struct {
	uid                       string
	claimNamespace, claimName string
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
		host:        host,
		pvs:         map[string]pvInfo{},
	}
}

// Event queues the event; the broadcaster sends it in the background.
// A PersistentVolume is read once (by name, in the background) for its
// UID, so the event shows in `kubectl describe pv`, and its claim; with
// WaitingPods the pods of this node (host) that use the claim and are
// still Pending get the event too. Without them the event is still sent
// on the PV.
func (k *Kube) Event(ref Ref, warning bool, reason, message string) {
	if ref.Zero() {
		return
	}
	if ref.Kind != "PersistentVolume" {
		k.send(ref, warning, reason, message)
		return
	}
	go func() {
		pv := k.pv(ref.Name)
		if ref.UID == "" {
			ref.UID = pv.uid
		}
		k.send(ref, warning, reason, message)
		if ref.WaitingPods {
			for _, pod := range k.waitingPods(pv) {
				k.send(pod, warning, reason, message)
			}
		}
	}()
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

// pv reads PersistentVolume name once (zero if it cannot be read).
func (k *Kube) pv(name string) pvInfo {
	k.mu.Lock()
	info, ok := k.pvs[name]
	k.mu.Unlock()
	if ok {
		return info
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	pv, err := k.cs.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		k.log.Debug("event: reading the PersistentVolume", "pv", name, "err", err)
		return pvInfo{}
	}
	info = pvInfo{uid: string(pv.UID)}
	if c := pv.Spec.ClaimRef; c != nil {
		info.claimNamespace, info.claimName = c.Namespace, c.Name
	}
	k.mu.Lock()
	k.pvs[name] = info
	k.mu.Unlock()
	return info
}

// waitingPods lists the Pending pods of this node that use pv's claim.
func (k *Kube) waitingPods(pv pvInfo) []Ref {
	if pv.claimName == "" || k.host == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list, err := k.cs.CoreV1().Pods(pv.claimNamespace).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + k.host})
	if err != nil {
		k.log.Debug("event: listing the pods waiting for a volume", "claim", pv.claimNamespace+"/"+pv.claimName, "err", err)
		return nil
	}
	var out []Ref
	for _, p := range list.Items {
		if p.Status.Phase != corev1.PodPending {
			continue
		}
		for _, v := range p.Spec.Volumes {
			if c := v.PersistentVolumeClaim; c != nil && c.ClaimName == pv.claimName {
				out = append(out, Pod(p.Namespace, p.Name, string(p.UID)))
				break
			}
		}
	}
	return out
}

// Stop sends what is queued (briefly) and stops the broadcaster.
func (k *Kube) Stop() { k.broadcaster.Shutdown() }
