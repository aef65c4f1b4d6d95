package cachejournal

import (
	"reflect"
	"testing"

	"github.com/rclone/rclone/lib/ranges"
)

func TestMissing(t *testing.T) {
	rs := func(p ...int64) ranges.Ranges {
		var out ranges.Ranges
		for i := 0; i < len(p); i += 2 {
			out.Insert(ranges.Range{Pos: p[i], Size: p[i+1]})
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		present ranges.Ranges
		size    int64
		want    []ranges.Range
	}{
		{"nothing cached", nil, 10, []ranges.Range{{Pos: 0, Size: 10}}},
		{"empty file", nil, 0, nil},
		{"all cached", rs(0, 10), 10, nil},
		{"cached past the size", rs(0, 20), 10, nil},
		{"head cached", rs(0, 4), 10, []ranges.Range{{Pos: 4, Size: 6}}},
		{"tail cached", rs(6, 4), 10, []ranges.Range{{Pos: 0, Size: 6}}},
		{"holes", rs(2, 2, 6, 1), 10, []ranges.Range{{Pos: 0, Size: 2}, {Pos: 4, Size: 2}, {Pos: 7, Size: 3}}},
		{"a range starting past the size", rs(0, 2, 12, 3), 10, []ranges.Range{{Pos: 2, Size: 8}}},
	} {
		if got := Missing(tc.present, tc.size); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: Missing(%v, %d) = %v, want %v", tc.name, tc.present, tc.size, got, tc.want)
		}
	}
}
