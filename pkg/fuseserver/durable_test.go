package fuseserver

import "testing"

func TestPathTable(t *testing.T) {
	tb := pathTable{nodes: map[uint64]*pnode{}, names: map[pkey]uint64{}}
	tb.learn(2, 1, "ckpt")
	tb.learn(3, 2, "step-1.pt")
	if p, ok := tb.path(3); !ok || p != "ckpt/step-1.pt" {
		t.Fatalf("path(3) = %q %v", p, ok)
	}
	tb.learn(4, 1, "final")
	tb.rename(2, "step-1.pt", 4, "model.pt")
	if p, _ := tb.path(3); p != "final/model.pt" {
		t.Fatalf("after rename: %q", p)
	}
	tb.learn(3, 4, "model.pt") // a second lookup of the same node
	tb.forget(3, 1)
	if _, ok := tb.path(3); !ok {
		t.Fatal("node forgotten while the kernel still holds a reference")
	}
	tb.forget(3, 1)
	if _, ok := tb.path(3); ok {
		t.Fatal("node still known after its last reference was forgotten")
	}
	if p, ok := tb.path(1); !ok || p != "" {
		t.Fatalf("root path = %q %v", p, ok)
	}
	tb.unlink(1, "ckpt")
	if _, ok := tb.names[pkey{1, "ckpt"}]; ok {
		t.Fatal("unlinked name still mapped")
	}
}
