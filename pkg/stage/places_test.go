package stage

import (
	"context"
	"testing"
)

// TestPlacesShareByNamespace: of 4 places one namespace runs at most 3,
// so a copy of another namespace starts at once; freed places go to the
// namespace running fewest (the earliest copy among equals), and a copy
// that stops waiting leaves no trace.
func TestPlacesShareByNamespace(t *testing.T) {
	p := newPlaces(4)
	var a []*placeTicket
	for range 5 {
		a = append(a, p.join("a"))
	}
	for i, tk := range a {
		if want := i < 3; tk.held() != want {
			t.Fatalf("copy %d of namespace a holds a place: %v, want %v (3 of 4 places per namespace)", i, tk.held(), want)
		}
	}
	b := p.join("b")
	if !b.held() {
		t.Fatal("namespace b's copy waits while namespace a runs 3 copies and queued 2 more; want it to start at once")
	}
	b2, c := p.join("b"), p.join("c")
	if b2.held() || c.held() {
		t.Fatal("a copy started beyond the 4 places")
	}
	// a runs 3, b 1: a place a frees goes to c (runs none); then a and b
	// run 1 each and the earlier of their waiting copies (a's fourth)
	// starts; then b (1) is behind a (2).
	p.leave(a[0])
	if !c.held() || b2.held() || a[3].held() {
		t.Fatalf("after a copy of a ended: c %v, b %v, a %v; want c alone to start (its namespace runs none)", c.held(), b2.held(), a[3].held())
	}
	p.leave(a[1])
	if !a[3].held() || b2.held() {
		t.Fatalf("after another copy of a ended: a's fourth %v, b's second %v; want a's fourth, the earlier of two namespaces running 1 each", a[3].held(), b2.held())
	}
	p.leave(c)
	if !b2.held() || a[4].held() {
		t.Fatalf("after c's copy ended: b's second %v, a's fifth %v; want b's (b runs 1, a 2)", b2.held(), a[4].held())
	}
	// a's fifth stops waiting: it leaves the queue and takes nothing.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.wait(ctx, a[4]); err == nil {
		t.Fatal("wait with an ended context returned nil, want its error")
	}
	for _, tk := range []*placeTicket{a[2], a[3], b, b2} {
		p.leave(tk)
	}
	if p.running != 0 || len(p.held) != 0 || len(p.queue) != 0 {
		t.Fatalf("after every copy ended: running %d, held %v, queue %d; want none", p.running, p.held, len(p.queue))
	}
	if a[4].held() {
		t.Fatal("a copy that stopped waiting was given a place")
	}
}

// TestPlacesOfOne: with one place (--copy-jobs 1) a namespace runs its
// one copy, and the others wait whoever they are.
func TestPlacesOfOne(t *testing.T) {
	p := newPlaces(1)
	a := p.join("a")
	b := p.join("b")
	if !a.held() || b.held() {
		t.Fatalf("one place: a %v, b %v; want a alone", a.held(), b.held())
	}
	p.leave(a)
	if !b.held() {
		t.Fatal("b does not start once a's copy ended")
	}
}
