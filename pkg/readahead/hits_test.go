package readahead

import (
	"context"
	"io"
	"testing"
)

// TestReaderCountsHits: a block read before it arrived is a miss (the
// first ones, which the reader schedules in the read itself), a
// block already fetched ahead when read is a hit, and every block of the
// file is counted exactly once.
func TestReaderCountsHits(t *testing.T) {
	const block = 1 << 20
	src := newSource(6 * block)
	var hits Hits
	opt := Options{Window: 4, BlockSize: block, FirstBlock: block}.withDefaults()
	r := newReader(context.Background(), src.open, 0, int64(len(src.data)), opt, newMemory(opt))
	r.hits = &hits
	defer r.Close()
	waitQueued := func() {
		for _, b := range r.queue {
			<-b.done
		}
	}
	buf := make([]byte, block)
	for i := 0; i < 6; i++ {
		if _, err := io.ReadFull(r, buf); err != nil {
			t.Fatal(err)
		}
		if i >= 1 {
			// From here on every block the reader scheduled has arrived
			// before it is read.
			waitQueued()
		}
	}
	got := hits.Counts()
	if got.BlockHits+got.BlockMisses != 6 || got.BlockHits < 4 || got.SmallHits != 0 {
		t.Fatalf("counts %+v: want 6 blocks counted once each, at least the last 4 hits", got)
	}
	if (*Hits)(nil).Counts() != (HitCounts{}) {
		t.Fatal("a nil Hits counts something")
	}
}
