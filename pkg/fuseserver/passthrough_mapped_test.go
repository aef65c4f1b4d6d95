package fuseserver

import (
	"testing"
	"time"
)

func TestRetryAfterDoublesUpToTheCap(t *testing.T) {
	want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 5 * time.Minute, 5 * time.Minute}
	var total time.Duration
	for i, w := range want {
		if got := retryAfter(i + 1); got != w {
			t.Errorf("retryAfter(%d) = %v, want %v", i+1, got, w)
		}
		total += want[i]
	}
	// The doc of settleTries: the last try about 15 minutes after the first.
	if total < 14*time.Minute || total > 16*time.Minute || len(want) != settleTries-1 {
		t.Errorf("%d waits between %d tries add up to %v", len(want), settleTries, total)
	}
}

func TestConflictNames(t *testing.T) {
	at := time.Date(2026, 12, 4, 13, 5, 9, 0, time.FixedZone("x", 3600))
	for i, want := range []string{"d/f.bin.conflict-20261204T120509Z", "d/f.bin.conflict-20261204T120509Z-1", "d/f.bin.conflict-20261204T120509Z-2"} {
		if got := conflictName("d/f.bin", at, i); got != want {
			t.Errorf("conflictName(%d) = %q, want %q", i, got, want)
		}
	}
}
