package redact

import (
	"fmt"
	"strings"
	"testing"
)

// TestRedactPartsBounded: a value of thousands of short lines masks the
// whole value and its first lines, up to MaxParts parts with those of the
// shorter values, whose parts come first, with a bounded number of
// patterns (without the bound some 15 per line).
func TestRedactPartsBounded(t *testing.T) {
	var b strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&b, "line%06d\n", i)
	}
	v := b.String()
	// A key file after it in name order but shorter: its lines are
	// masked on their own all the same.
	key := "zz-key\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n"
	r := New(v, "a-second-value", key)
	if max := 20 * (MaxParts + 2); len(r.patterns) > max {
		t.Fatalf("%d patterns, want at most %d", len(r.patterns), max)
	}
	for _, s := range []string{v, "line000000", fmt.Sprintf("line%06d", MaxParts-4), "a-second-value", "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"} {
		if got := r.String("x " + s + " y"); strings.Contains(got, s) {
			t.Errorf("%.20q not masked: %.60q", s, got)
		}
	}
}
