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
// 16 MiB and at 108-147 MB/s with 1 MiB, cold sequential reads level;
// with 20 ms added, 1 MiB took random reads from 46-50 to 19 MB/s and
// sequential ones from 449-481 to 323-362 MB/s (docs/benchmarks.md,
// "MOUNT_CACHED reads ahead as far as the round trip needs"). So the
// server times a few requests at start and picks the buffer from the
// shortest.
const (
	// nearStore: a store that answers within this is near.
	nearStore = 2 * time.Millisecond
	// nearBuffer is the async buffer for a near store: one of rclone's
	// 1 MiB buffers, so the downloader still writes the cache file in
	// 1 MiB pieces (without a buffer it writes 32 KiB ones, at 1.5 times
	// the CPU for a sequential read).
	nearBuffer = fs.SizeSuffix(1 << 20)
	// roundTripProbes is the most requests probeRoundTrip sends: the
	// first also pays for a new connection (TCP, TLS).
	roundTripProbes = 3
	// farStore: an answer that took this long is from a far store even
	// if it paid for a new connection, which takes at most three round
	// trips more (TCP, then TLS 1.2).
	farStore = 4 * nearStore
	// probeTimeout bounds each probe; a store slower than that is far.
	probeTimeout = 5 * time.Second
)

// probeKey is what probeRoundTrip asks the store about: a key below the
// driver's own directory that need not exist.
const probeKey = bucket.MetaDir + "/round-trip-probe"

// probeRoundTrip returns the shortest of up to roundTripProbes round trips
// to f, each a metadata request (a HEAD on S3) for probeKey, sent one after
// another; it stops once the shortest is below nearStore or not below
// farStore, where another request could not change the verdict. A request
// that fails other than with "not found" measures nothing (it may not have
// reached the store); ok is false when none did.
func probeRoundTrip(ctx context.Context, f fs.Fs) (best time.Duration, ok bool) {
	return shortestRoundTrip(ctx, roundTripProbes, func(ctx context.Context) (time.Duration, error) {
		ctx, cancel := context.WithTimeout(ctx, probeTimeout)
		defer cancel()
		start := time.Now()
		_, err := f.NewObject(ctx, probeKey)
		return time.Since(start), err
	})
}

// startProbe runs probeRoundTrip in the background; the function it
// returns waits for the result.
func startProbe(ctx context.Context, f fs.Fs) func() (time.Duration, bool) {
	done := make(chan struct{})
	var rt time.Duration
	var ok bool
	go func() {
		defer close(done)
		rt, ok = probeRoundTrip(ctx, f)
	}()
	return func() (time.Duration, bool) {
		<-done
		return rt, ok
	}
}

// shortestRoundTrip makes up to n calls of ask, which returns how long
// its request took; see probeRoundTrip.
func shortestRoundTrip(ctx context.Context, n int, ask func(context.Context) (time.Duration, error)) (best time.Duration, ok bool) {
	for range n {
		if ctx.Err() != nil {
			break
		}
		took, err := ask(ctx)
		if err != nil && !errors.Is(err, fs.ErrorObjectNotFound) {
			continue
		}
		if !ok || took < best {
			best, ok = took, true
		}
		if best < nearStore || best >= farStore {
			break
		}
	}
	return best, ok
}

// cacheBuffer is the async buffer for a store whose shortest round trip
// was rt (ok false: unknown): nearBuffer for a near store, else def
// (rclone's --buffer-size).
func cacheBuffer(rt time.Duration, ok bool, def fs.SizeSuffix) fs.SizeSuffix {
	if ok && rt < nearStore && def > nearBuffer {
		return nearBuffer
	}
	return def
}
