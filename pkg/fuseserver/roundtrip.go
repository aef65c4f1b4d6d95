package fuseserver

import (
	"context"
	"errors"
	"time"

	"github.com/rclone/rclone/fs"

	"github.com/bucket-csi/bucket-csi/pkg/bucket"
)

// MOUNT_CACHED's cache downloader (rclone's) reads its async buffer,
// --buffer-size, ahead of every read that misses the cache, random ones
// too, and stops only once the buffer is full. Against a far store that
// read-ahead hides the round trip: its bytes serve the next sequential
// reads, often later random ones. Against a near one (in the cluster, on
// the node) it costs the store and the node's CPU bytes nobody asked for:
// on loopback, cold random 1 MiB reads ran at 45-67 MB/s with rclone's
// 16 MiB and at 130-147 MB/s with 1 MiB, cold sequential reads no slower;
// with 20 ms added, 1 MiB took random reads from 26-50 to 19 MB/s and
// sequential ones from 449-481 to 323-362 MB/s (docs/benchmarks.md,
// "MOUNT_CACHED reads ahead as far as the round trip needs"; where
// between 0 and 20 ms the two cross was not measured). So the server
// times a few requests at start and picks the buffer from the shortest.
const (
	// nearStore: a store that answers in less than this is near.
	nearStore = 2 * time.Millisecond
	// nearBuffer is the async buffer for a near store: one of rclone's
	// 1 MiB buffers, so the downloader still writes the cache file in
	// 1 MiB pieces (without a buffer it writes 32 KiB ones, at 1.5 times
	// the CPU for a sequential read).
	nearBuffer = fs.SizeSuffix(1 << 20)
	// roundTripProbes is the most requests probeRoundTrip sends: the
	// first may also pay for a new connection (TCP, TLS), a name lookup
	// or credentials.
	roundTripProbes = 3
	// farStore: two answers that both took this long are from a far
	// store (the second one's connection was made).
	farStore = 4 * nearStore
	// probeBudget bounds the probing as a whole, so that a store that is
	// down or far away delays the mount by no more than this: what has
	// not answered by then measured nothing.
	probeBudget = 100 * time.Millisecond
)

// probeKey is what probeRoundTrip asks the store about: a key below the
// driver's own directory that need not exist.
const probeKey = bucket.MetaDir + "/round-trip-probe"

// errNoRequest: a probe reached no store (the backend answered without a
// request, e.g. S3 with no_head_object).
var errNoRequest = errors.New("no request was sent")

// probeRoundTrip returns the shortest of up to roundTripProbes round trips
// to f, each a metadata request (a HEAD on S3) for probeKey, sent one after
// another within probeBudget. It stops at an answer under nearStore, or
// at the second answer when both took farStore or longer. An answer is a
// success or "not found" for which sent (the server's count of store
// requests) went up; any other error measures nothing. ok is false when
// nothing was measured. f must be the backend itself, not a wrapper that
// may answer from memory.
func probeRoundTrip(ctx context.Context, f fs.Fs, sent func() int64) (best time.Duration, ok bool) {
	ctx, cancel := context.WithTimeout(ctx, probeBudget)
	defer cancel()
	return shortestRoundTrip(ctx, roundTripProbes, func(ctx context.Context) (time.Duration, error) {
		before := sent()
		start := time.Now()
		_, err := f.NewObject(ctx, probeKey)
		took := time.Since(start)
		if sent() == before {
			return took, errNoRequest
		}
		return took, err
	})
}

// startProbe runs probeRoundTrip in the background; the function it
// returns waits for the result.
func startProbe(ctx context.Context, f fs.Fs, sent func() int64) func() (time.Duration, bool) {
	done := make(chan struct{})
	var rt time.Duration
	var ok bool
	go func() {
		defer close(done)
		rt, ok = probeRoundTrip(ctx, f, sent)
	}()
	return func() (time.Duration, bool) {
		<-done
		return rt, ok
	}
}

// shortestRoundTrip makes up to n calls of ask, which returns how long
// its request took, while ctx lasts; see probeRoundTrip for the rules.
func shortestRoundTrip(ctx context.Context, n int, ask func(context.Context) (time.Duration, error)) (best time.Duration, ok bool) {
	answers := 0
	for range n {
		if ctx.Err() != nil {
			break
		}
		took, err := ask(ctx)
		if err != nil && !errors.Is(err, fs.ErrorObjectNotFound) {
			continue
		}
		answers++
		if !ok || took < best {
			best, ok = took, true
		}
		if best < nearStore || answers >= 2 && best >= farStore {
			break
		}
	}
	return best, ok
}

// cacheBuffer is the async buffer for a store whose shortest round trip
// was rt (ok false: unknown): nearBuffer for a near store, else def
// (rclone's --buffer-size, 16 MiB).
func cacheBuffer(rt time.Duration, ok bool, def fs.SizeSuffix) fs.SizeSuffix {
	if ok && rt < nearStore && def > nearBuffer {
		return nearBuffer
	}
	return def
}
