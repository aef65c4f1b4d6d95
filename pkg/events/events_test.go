package events

import (
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/bucket-csi/bucket-csi/internal/fakeapi"
)

// TestKubeRecorder: events reach the API server with their object (a
// PersistentVolume's UID looked up, so `kubectl describe` finds them),
// type, reason, message and source; with WaitingPods also on the Pending
// pods of this node using the PV's claim, and no other; a zero Ref sends
// nothing.
func TestKubeRecorder(t *testing.T) {
	api := fakeapi.Start()
	defer api.Close()
	api.AddPV("pvc-1", "uid-of-pvc-1", "team-a", "data-1")
	api.AddPod("team-a", "waiting-0", "uid-waiting-0", "node-1", "data-1", corev1.PodPending)
	api.AddPod("team-a", "running-0", "uid-running-0", "node-1", "data-1", corev1.PodRunning)
	api.AddPod("team-a", "elsewhere-0", "uid-elsewhere-0", "node-2", "data-1", corev1.PodPending)
	api.AddPod("team-a", "other-claim-0", "uid-other-0", "node-1", "data-2", corev1.PodPending)
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: api.URL})
	if err != nil {
		t.Fatal(err)
	}
	k := NewKube(cs, "bucket-csi-node", "node-1", slog.New(slog.DiscardHandler))
	defer k.Stop()
	k.Event(Ref{}, true, "Ignored", "no object")
	k.Event(Pod("team-a", "trainer-0", "uid-pod"), false, "CopyDone", "copied 40 objects")
	k.Event(PV("pvc-1"), true, "UploadsPending", "3 files (12 bytes) pending upload")
	waiting := PV("pvc-1")
	waiting.WaitingPods = true
	k.Event(waiting, false, "CopyProgress", "3 of 10 objects")
	var got []corev1.Event
	for deadline := time.Now().Add(10 * time.Second); len(got) < 4; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("events received: %+v", got)
		}
		got = api.Events()
	}
	time.Sleep(200 * time.Millisecond)
	if got = api.Events(); len(got) != 4 {
		t.Fatalf("%d events received, want 4: %+v", len(got), got)
	}
	byReason := map[string]corev1.Event{}
	var progress []string
	for _, e := range got {
		byReason[e.Reason] = e
		if e.Reason == "CopyProgress" {
			progress = append(progress, e.InvolvedObject.Kind+"/"+e.InvolvedObject.Name+"/"+string(e.InvolvedObject.UID))
		}
	}
	// Only the pod of this node that waits for the claim hears too.
	sort.Strings(progress)
	if strings.Join(progress, " ") != "PersistentVolume/pvc-1/uid-of-pvc-1 Pod/waiting-0/uid-waiting-0" {
		t.Errorf("CopyProgress recorded on %v", progress)
	}
	pod := byReason["CopyDone"]
	if o := pod.InvolvedObject; o.Kind != "Pod" || o.Namespace != "team-a" || o.Name != "trainer-0" || o.UID != "uid-pod" ||
		pod.Namespace != "team-a" || pod.Type != corev1.EventTypeNormal || pod.Message != "copied 40 objects" ||
		pod.Source.Component != "bucket-csi-node" || pod.Source.Host != "node-1" {
		t.Errorf("pod event: %+v", pod)
	}
	pv := byReason["UploadsPending"]
	if o := pv.InvolvedObject; o.Kind != "PersistentVolume" || o.Name != "pvc-1" || o.UID != "uid-of-pvc-1" || pv.Type != corev1.EventTypeWarning {
		t.Errorf("PV event: %+v", pv)
	}
}

func TestLimiter(t *testing.T) {
	l := Limiter{Every: time.Minute}
	t0 := time.Unix(0, 0)
	for i, tc := range []struct {
		key  string
		at   time.Duration
		want bool
	}{
		{"a", 0, true}, {"a", 30 * time.Second, false}, {"b", 30 * time.Second, true}, {"a", time.Minute, true}, {"a", 90 * time.Second, false},
	} {
		if got := l.Allow(tc.key, t0.Add(tc.at)); got != tc.want {
			t.Errorf("%d: Allow(%s, %v) = %v, want %v", i, tc.key, tc.at, got, tc.want)
		}
	}
	l.Forget("a")
	if !l.Allow("a", t0.Add(91*time.Second)) {
		t.Error("a forgotten key is still limited")
	}
}
