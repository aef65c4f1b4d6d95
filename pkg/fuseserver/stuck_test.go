package fuseserver

import (
	"testing"
	"time"
)

// TestStuckFiles: a journal name dirty and not queued counts once it has
// stayed so past the threshold; queued, clean or gone names never count,
// and a name that was queued in between starts its wait again.
func TestStuckFiles(t *testing.T) {
	s := newStuckFiles(time.Minute)
	t0 := time.Now()
	dirty := map[string]bool{"a": true, "b": true, "c": false}
	isDirty := func(n string) bool { return dirty[n] }
	s.update([]string{"a", "b", "c"}, map[string]bool{"b": true}, isDirty, t0)
	if n := s.count(t0.Add(59 * time.Second)); n != 0 {
		t.Fatalf("before the threshold: %d stuck", n)
	}
	s.update([]string{"a", "b", "c"}, map[string]bool{}, isDirty, t0.Add(30*time.Second))
	if n := s.count(t0.Add(61 * time.Second)); n != 1 {
		t.Fatalf("a past the threshold, b queued until 30 s: %d stuck, want 1", n)
	}
	if n := s.count(t0.Add(91 * time.Second)); n != 2 {
		t.Fatalf("both past the threshold: %d stuck, want 2", n)
	}
	s.update([]string{"b"}, map[string]bool{}, isDirty, t0.Add(92*time.Second))
	if n := s.count(t0.Add(93 * time.Second)); n != 1 {
		t.Fatalf("a uploaded (gone from the journal): %d stuck, want 1", n)
	}
	var none *stuckFiles
	if none.count(t0) != 0 {
		t.Fatal("a server without a cache counts stuck files")
	}
}
