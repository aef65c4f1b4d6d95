package driver

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// TestInlineVolumesPerNamespace: with a cap of 2, a namespace's third
// inline volume on the node answers ResourceExhausted naming the
// namespace and the flag, with an event on the pod and no record left;
// another namespace is not affected; a second target of an admitted
// volume is not refused; an unpublish frees the place; the count
// survives a restart of the plugin (it is read from the node's records);
// a cap of 0 admits any number.
func TestInlineVolumesPerNamespace(t *testing.T) {
	ctx := context.Background()
	log := &eventLog{}
	e := newEnv(t, func(c *Config) { c.Inline.PerNamespace, c.Events = 2, log })
	e.bucket("data")
	publish := func(d *Driver, id, ns, target string) error {
		req := publishReq(id, "", e.path(target), rwx())
		req.VolumeContext = map[string]string{volume.KeySource: "s3://data", volume.KeyEphemeral: "true",
			volume.KeyPodNamespace: ns, volume.KeyPodName: "p-" + id, volume.KeyPodUID: "u-" + id}
		req.Secrets = map[string]string{secretKey: ambientKey}
		_, err := d.NodePublishVolume(ctx, req)
		return err
	}
	for _, id := range []string{"csi-a1", "csi-a2"} {
		wantCode(t, "publish "+id, publish(e.d, id, "a", id), codes.OK)
	}
	err := publish(e.d, "csi-a3", "a", "csi-a3")
	wantCode(t, "the namespace's third inline volume", err, codes.ResourceExhausted)
	if msg := err.Error(); !strings.Contains(msg, `namespace "a" already has 2 inline volumes`) || !strings.Contains(msg, "--inline-volumes-per-namespace") {
		t.Fatalf("refusal %q does not name the namespace, its count and the flag", msg)
	}
	onPod := 0
	for i, ref := range log.refs {
		if log.reasons[i] == ReasonInlineRefused && ref.Kind == "Pod" && ref.Name == "p-csi-a3" {
			onPod++
		}
	}
	if onPod != 1 {
		t.Fatalf("events %v about %v, want one %s on the pod", log.reasons, log.refs, ReasonInlineRefused)
	}
	if rec, _ := e.cfg.State.Load("csi-a3"); rec != nil {
		t.Fatalf("a refused inline volume left a record: %+v", rec)
	}
	wantCode(t, "another namespace's inline volume", publish(e.d, "csi-b1", "b", "csi-b1"), codes.OK)
	wantCode(t, "a second target of an admitted volume", publish(e.d, "csi-a1", "a", "csi-a1-second"), codes.OK)

	restarted := New(e.cfg)
	wantCode(t, "the third inline volume after a restart", publish(restarted, "csi-a3", "a", "csi-a3"), codes.ResourceExhausted)
	_, err = restarted.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "csi-a2", TargetPath: e.path("csi-a2")})
	wantCode(t, "unpublish", err, codes.OK)
	wantCode(t, "the third inline volume once one is unpublished", publish(restarted, "csi-a3", "a", "csi-a3"), codes.OK)
	if rec, _ := e.cfg.State.Load("csi-a3"); rec == nil || rec.Namespace != "a" {
		t.Fatalf("record %+v, want it to name namespace a", rec)
	}

	e.cfg.Inline.PerNamespace = 0
	uncapped := New(e.cfg)
	wantCode(t, "a fourth inline volume without a cap", publish(uncapped, "csi-a4", "a", "csi-a4"), codes.OK)
}

// TestAdmitInlineCountsStagesInFlight: an admitted volume whose stage has
// not returned (its record may not be saved yet) holds its namespace's
// place until done, so two publishes racing for the last place cannot
// both take it.
func TestAdmitInlineCountsStagesInFlight(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Inline.PerNamespace = 1 })
	done, err := e.d.admitInline("csi-1", "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.admitInline("csi-2", "a"); !errors.Is(err, fault.Exhausted) {
		t.Fatalf("a second volume beside one in flight: %v, want fault.Exhausted", err)
	}
	if other, err := e.d.admitInline("csi-3", "b"); err != nil {
		t.Fatalf("another namespace: %v", err)
	} else {
		other()
	}
	done()
	next, err := e.d.admitInline("csi-2", "a")
	if err != nil {
		t.Fatalf("once the first is done (and left no record): %v", err)
	}
	next()
}
