package cachejournal

import "github.com/rclone/rclone/lib/ranges"

// Missing returns, in order, the ranges of [0, size) that present does not
// cover (present as rclone keeps it: sorted, merged).
func Missing(present ranges.Ranges, size int64) []ranges.Range {
	var out []ranges.Range
	at := int64(0)
	for _, r := range present {
		if at >= size {
			break
		}
		if r.Pos > at {
			out = append(out, ranges.Range{Pos: at, Size: min(r.Pos, size) - at})
		}
		at = max(at, r.End())
	}
	if at < size {
		out = append(out, ranges.Range{Pos: at, Size: size - at})
	}
	return out
}
