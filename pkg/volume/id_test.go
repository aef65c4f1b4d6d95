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
		// Source volumes carry their name's hash too.
		{Spec: Spec{Store: "s3", Bucket: "a.b-c", Prefix: "x/y z/é", Mode: ModeCopy, Persistent: true, Existing: true}, NameHash: NameHash("pvc-2")},
		{Spec: Spec{Store: "azure", Bucket: "cont", Location: "acct", Prefix: "p", Mode: ModeMountCached, Persistent: true, Existing: true}, NameHash: NameHash("pvc-3")},
	}
	for _, h := range handles {
		id, err := h.ID()
		if err != nil {
			t.Fatalf("ID(%+v): %v", h, err)
		}
		got, err := ParseID(kinds, id)
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
		"v1:s3:Mpn:-:abc", "v1:s3:Mps:0123456789AB:abc", "v1:s3:Mps:0123456789a:abc", "v1:s3:Mps::abc", "v1:s3:Mpn:0123456789ab:AB",
		"v1:s3:Mps:-:abc/../x", "v1:s3:Mps:-:abc/x/", "v1:zz:Mps:-:abc", strings.Repeat("v", 200),
		"v1:s3:Mps:-:abc/\x00",
	} {
		if _, err := ParseID(kinds, id); !errors.Is(err, fault.NotFound) {
			t.Errorf("ParseID(%q) = %v, want fault.NotFound", id, err)
		}
	}
}

// TestSourceIDsPerVolume: two volumes of one `source` StorageClass get
// different IDs that decode to the same bucket, and an ID issued before
// source volumes carried a name hash still decodes, to a Handle without one.
func TestSourceIDsPerVolume(t *testing.T) {
	spec := Spec{Store: "s3", Bucket: "dataset", Prefix: "train", Mode: ModeMount, Persistent: true, Existing: true}
	a, err := Handle{Spec: spec, NameHash: NameHash("pvc-a")}.ID()
	if err != nil {
		t.Fatal(err)
	}
	b, err := Handle{Spec: spec, NameHash: NameHash("pvc-b")}.ID()
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatalf("two source volumes share the ID %q", a)
	}
	if want := "v1:s3:Mps:" + NameHash("pvc-a") + ":dataset/train"; a != want {
		t.Fatalf("ID %q, want %q", a, want)
	}
	for _, id := range []string{a, b} {
		h, err := ParseID(kinds, id)
		if err != nil || h.Spec != spec {
			t.Fatalf("ParseID(%q) = %+v %v, want spec %+v", id, h, err, spec)
		}
	}
	old := "v1:s3:Mps:-:dataset/train"
	h, err := ParseID(kinds, old)
	if err != nil || h.Spec != spec || h.NameHash != "" {
		t.Fatalf("ParseID(%q) of an earlier version's ID = %+v %v", old, h, err)
	}
	if again, err := h.ID(); err != nil || again != old {
		t.Fatalf("an earlier version's ID re-encodes to %q %v", again, err)
	}
}

// TestSourceIDLength: with the longest Azure container and account names, a
// source ID with its name hash and a prefix filling exactly 128 bytes is
// issued, and one byte more of prefix is refused.
func TestSourceIDLength(t *testing.T) {
	h := Handle{Spec: Spec{Store: "azure", Bucket: strings.Repeat("c", 63), Location: strings.Repeat("a", 24), Mode: ModeMountCached, Existing: true}, NameHash: NameHash("pvc")}
	base, err := h.ID()
	if err != nil {
		t.Fatal(err)
	}
	room := MaxIDLength - len(base) - 1 // "/" before the prefix
	h.Prefix = strings.Repeat("p", room)
	if id, err := h.ID(); err != nil || len(id) != MaxIDLength {
		t.Fatalf("prefix of %d bytes: %q %v", room, id, err)
	}
	h.Prefix += "p"
	if _, err := h.ID(); !errors.Is(err, fault.Invalid) {
		t.Fatalf("prefix of %d bytes: %v, want fault.Invalid", room+1, err)
	}
	t.Logf("longest azure bucket and account: %d bytes left for a prefix", room)
}
