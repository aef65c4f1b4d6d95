package fuseserver

import (
	"testing"
	"time"
)

// TestPendingAges: an item's age runs from when it was first seen queued,
// items gone from the queue are forgotten, and an empty queue is age 0.
func TestPendingAges(t *testing.T) {
	var p pendingAges
	t0 := time.Unix(1000, 0)
	if got := p.oldest(t0); got != 0 {
		t.Fatalf("empty: %v", got)
	}
	p.seen([]uint64{1, 2}, t0)
	p.seen([]uint64{1, 2, 3}, t0.Add(5*time.Second))
	if got := p.oldest(t0.Add(7 * time.Second)); got != 7*time.Second {
		t.Fatalf("oldest = %v, want 7s", got)
	}
	p.seen([]uint64{3}, t0.Add(8*time.Second))
	if got := p.oldest(t0.Add(9 * time.Second)); got != 4*time.Second {
		t.Fatalf("after 1 and 2 uploaded: oldest = %v, want 4s (item 3)", got)
	}
	p.seen(nil, t0.Add(10*time.Second))
	if got := p.oldest(t0.Add(11 * time.Second)); got != 0 {
		t.Fatalf("drained: %v", got)
	}
}

func TestStatusClass(t *testing.T) {
	for code, want := range map[string]string{"200": "2xx", "206": "2xx", "304": "3xx", "404": "4xx", "503": "5xx", "0": "error", "x": "error"} {
		if got := statusClass(code); got != want {
			t.Errorf("statusClass(%q) = %q, want %q", code, got, want)
		}
	}
}
