package readahead

import "sync/atomic"

// Hits counts how reads of one Fs were served; safe for concurrent use.
// A block is a read-ahead hit when the bytes the first read that needed it
// asked for had arrived, a miss when that read had to wait for them; a small-file
// hit is an open served whole from a small-file prefetch; an mtime hit is
// a stat answered with an mtime looked up ahead.
type Hits struct {
	blockHits, blockMisses, smallHits, mtimeHits atomic.Int64
}

// HitCounts is a snapshot of Hits.
type HitCounts struct {
	BlockHits   int64 `json:"blockHits"`
	BlockMisses int64 `json:"blockMisses"`
	SmallHits   int64 `json:"smallHits"`
	MTimeHits   int64 `json:"mtimeHits"`
}

// Counts returns the figures so far; a nil Hits counts nothing.
func (h *Hits) Counts() HitCounts {
	if h == nil {
		return HitCounts{}
	}
	return HitCounts{BlockHits: h.blockHits.Load(), BlockMisses: h.blockMisses.Load(), SmallHits: h.smallHits.Load(), MTimeHits: h.mtimeHits.Load()}
}

// block records whether a block was ready when first read.
func (h *Hits) block(ready bool) {
	switch {
	case h == nil:
	case ready:
		h.blockHits.Add(1)
	default:
		h.blockMisses.Add(1)
	}
}

// small records an open served from a small-file prefetch.
func (h *Hits) small() {
	if h != nil {
		h.smallHits.Add(1)
	}
}

// mtime records a stat answered with an mtime looked up ahead.
func (h *Hits) mtime() {
	if h != nil {
		h.mtimeHits.Add(1)
	}
}
