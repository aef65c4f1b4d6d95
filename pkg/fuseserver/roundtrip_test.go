package fuseserver

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rclone/rclone/fs"
)

func TestCacheBuffer(t *testing.T) {
	const def = fs.SizeSuffix(16 << 20)
	for _, tc := range []struct {
		rt   time.Duration
		ok   bool
		def  fs.SizeSuffix
		want fs.SizeSuffix
	}{
		{300 * time.Microsecond, true, def, nearBuffer},
		{nearStore - time.Microsecond, true, def, nearBuffer},
		{nearStore, true, def, def},
		{20 * time.Millisecond, true, def, def},
		{0, false, def, def},            // nothing measured: rclone's own
		{0, true, 512 << 10, 512 << 10}, // never larger than asked
		{time.Millisecond, true, 0, 0},  // no buffer stays none
		{time.Millisecond, true, 4 << 20, nearBuffer},
	} {
		if got := cacheBuffer(tc.rt, tc.ok, tc.def); got != tc.want {
			t.Errorf("cacheBuffer(%v, %v, %v) = %v, want %v", tc.rt, tc.ok, tc.def, got, tc.want)
		}
	}
}

// TestShortestRoundTrip: the shortest answered call counts, "not found"
// is an answer, other errors are not, and a near or a far answer ends the
// probing.
func TestShortestRoundTrip(t *testing.T) {
	ctx := context.Background()
	answers := func(errs []error, d ...time.Duration) (func(context.Context) (time.Duration, error), *int) {
		calls := 0
		return func(context.Context) (time.Duration, error) {
			i := calls
			calls++
			return d[i], errs[i]
		}, &calls
	}
	notFound := fs.ErrorObjectNotFound
	ask, calls := answers([]error{nil, notFound, nil}, 7*time.Millisecond, 3*time.Millisecond, 5*time.Millisecond)
	rt, ok := shortestRoundTrip(ctx, 3, ask)
	if !ok || rt != 3*time.Millisecond || *calls != 3 {
		t.Errorf("store between near and far: %v, %v after %d calls; want 3ms, true after 3", rt, ok, *calls)
	}
	ask, calls = answers([]error{notFound, nil, nil}, 30*time.Millisecond, farStore, time.Microsecond)
	if rt, ok = shortestRoundTrip(ctx, 3, ask); !ok || rt != farStore || *calls != 2 {
		t.Errorf("far store: %v, %v after %d calls; want %v, true after 2", rt, ok, *calls, farStore)
	}
	ask, calls = answers([]error{nil, nil, nil}, 30*time.Millisecond, time.Millisecond, time.Hour)
	if rt, ok = shortestRoundTrip(ctx, 3, ask); !ok || rt != time.Millisecond || *calls != 2 {
		t.Errorf("a slow first answer: %v, %v after %d calls; want 1ms, true after 2", rt, ok, *calls)
	}
	ask, calls = answers([]error{notFound, nil, nil}, 300*time.Microsecond, time.Microsecond, time.Microsecond)
	if rt, ok = shortestRoundTrip(ctx, 3, ask); !ok || rt != 300*time.Microsecond || *calls != 1 {
		t.Errorf("near store: %v, %v after %d calls; want 300µs, true after 1", rt, ok, *calls)
	}
	refused := errors.New("connection refused")
	ask, calls = answers([]error{refused, refused, refused}, 0, 0, 0)
	if rt, ok = shortestRoundTrip(ctx, 3, ask); ok || *calls != 3 {
		t.Errorf("failing store: %v, %v after %d calls; want nothing measured after 3", rt, ok, *calls)
	}
	ask, calls = answers([]error{refused, nil, nil}, 0, 5*time.Millisecond, 5*time.Millisecond)
	if rt, ok = shortestRoundTrip(ctx, 3, ask); !ok || rt != 5*time.Millisecond || *calls != 3 {
		t.Errorf("a fast failure: %v, %v after %d calls; want the answered 5ms, true after 3", rt, ok, *calls)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	ask, calls = answers([]error{nil}, 0)
	if _, ok = shortestRoundTrip(cancelled, 3, ask); ok || *calls != 0 {
		t.Errorf("cancelled: %v after %d calls; want nothing asked", ok, *calls)
	}
}

// TestProbeRoundTripCountsRequests: a backend that answers without a
// request (here rclone's local one: the probe's key is not found on disk)
// measures nothing, so the buffer stays rclone's; with a request counted
// the same answer is a near store.
func TestProbeRoundTripCountsRequests(t *testing.T) {
	f, err := fs.NewFs(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	none := func() int64 { return 0 }
	if rt, ok := startProbe(context.Background(), f, none)(); ok {
		t.Fatalf("no request sent: round trip %v measured", rt)
	}
	var n int64
	counted := func() int64 { n++; return n }
	rt, ok := startProbe(context.Background(), f, counted)()
	if !ok || rt >= nearStore {
		t.Fatalf("local directory, requests counted: round trip %v, measured %v; want under %v", rt, ok, nearStore)
	}
}

// silentFs is a backend whose metadata requests never come back.
type silentFs struct{ fs.Fs }

func (silentFs) NewObject(ctx context.Context, _ string) (fs.Object, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestProbeRoundTripBudget: a store that never answers delays the start
// by probeBudget, not by a timeout per request, and measures nothing.
func TestProbeRoundTripBudget(t *testing.T) {
	f, err := fs.NewFs(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rt, ok := probeRoundTrip(context.Background(), silentFs{f}, func() int64 { return time.Now().UnixNano() })
	if took := time.Since(start); ok || took < probeBudget || took > probeBudget+time.Second {
		t.Fatalf("a silent store: %v, measured %v after %v; want nothing measured after %v", rt, ok, took, probeBudget)
	}
}
