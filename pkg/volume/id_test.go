package volume

import (
	"errors"
	"strings"
	"testing"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
)

func TestIDRoundTrip(t *testing.T) {
	handles := []Handle{
		{Spec: Spec{Store: "s3", Bucket: "abc", Mode: ModeMount, Persistent: true}, NameHash: NameHash("pvc-1")},
		{Spec: Spec{Store: "s3", Bucket: "a.b-c", Prefix: "x/y z/é", Mode: ModeCopy, Persistent: true, Existing: true}},
		{Spec: Spec{Store: "azure", Bucket: "cont", Location: "acct", Mode: ModeMountCached}, NameHash: NameHash("n")},
		{Spec: Spec{Store: "oci", Bucket: "B_1", Location: "us-ashburn-1", Prefix: "p:q", Mode: ModeMount, Persistent: true, Existing: true}},
	}
	for _, h := range handles {
		id, err := h.ID()
		if err != nil {
			t.Fatalf("ID(%+v): %v", h, err)
		}
		got, err := ParseID(id)
		if err != nil {
			t.Fatalf("ParseID(%q): %v", id, err)
		}
		if got != h {
			t.Fatalf("round trip of %q: got %+v want %+v", id, got, h)
		}
	}
}

func TestIDTooLong(t *testing.T) {
	h := Handle{Spec: Spec{Store: "s3", Bucket: strings.Repeat("a", 63), Prefix: strings.Repeat("p", 60), Mode: ModeMount, Existing: true, Persistent: true}}
	if _, err := h.ID(); !errors.Is(err, fault.Invalid) {
		t.Fatalf("got %v, want fault.Invalid", err)
	}
}

func TestParseIDRejects(t *testing.T) {
	for _, id := range []string{
		"", "some-vol-id", "v2:s3:Mpn:0123456789ab:abc", "v1:s3:Xpn:0123456789ab:abc",
		"v1:s3:Mps:0123456789ab:abc", "v1:s3:Mpn:-:abc", "v1:s3:Mpn:0123456789ab:AB",
		"v1:s3:Mps:-:abc/../x", "v1:s3:Mps:-:abc/x/", "v1:zz:Mps:-:abc", strings.Repeat("v", 200),
		"v1:s3:Mps:-:abc/\x00",
	} {
		if _, err := ParseID(id); !errors.Is(err, fault.NotFound) {
			t.Errorf("ParseID(%q) = %v, want fault.NotFound", id, err)
		}
	}
}
