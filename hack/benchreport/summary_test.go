package main

import (
	"reflect"
	"testing"
)

func TestSummarize(t *testing.T) {
	tests := []struct {
		in   []float64
		want Stats
	}{
		{[]float64{7}, Stats{7, 7, 7, 1}},
		{[]float64{3, 1, 2}, Stats{2, 1, 3, 3}},
		{[]float64{4, 1, 3, 2}, Stats{2.5, 1, 4, 4}},
		{[]float64{5, 9, 1, 7, 3}, Stats{5, 1, 9, 5}},
		{[]float64{10, 20}, Stats{15, 10, 20, 2}},
	}
	for _, tt := range tests {
		in := append([]float64(nil), tt.in...)
		if got := summarize(in); got != tt.want {
			t.Errorf("summarize(%v) = %+v, want %+v", tt.in, got, tt.want)
		}
		if !reflect.DeepEqual(in, tt.in) {
			t.Errorf("summarize modified its input: %v", in)
		}
	}
}

// rowKeys returns "figure unit" of each row, in order.
func rowKeys(rep *Report) []string {
	var out []string
	for _, r := range rep.Rows {
		out = append(out, r.Figure+" "+r.Unit)
	}
	return out
}

func TestSummarizeRows(t *testing.T) {
	samples := []Sample{
		{"SeqRead", "s3fs", "ns/op", 2e9}, {"SeqRead", "s3fs", "MB/s", 400},
		{"TTFB", "s3fs", "ns/op", 12.5e6},
		{"SeqRead", "s3fs", "ns/op", 1e9}, {"SeqRead", "s3fs", "MB/s", 500},
		{"TTFB", "s3fs", "ns/op", 13.5e6},
		{"SeqRead", "s3fs", "cpu-s/GiB", 0.9},
	}
	rep := Summarize(samples)
	want := []string{"SeqRead MB/s", "TTFB ms", "SeqRead cpu-s/GiB"}
	if got := rowKeys(rep); !reflect.DeepEqual(got, want) {
		t.Fatalf("rows = %v, want %v", got, want)
	}
	if st, _ := rep.Lookup("TTFB", "ms", "s3fs"); st != (Stats{13, 12.5, 13.5, 2}) {
		t.Errorf("TTFB ms = %+v, want median 13 ms from ns/op", st)
	}
	if st, _ := rep.Lookup("SeqRead", "MB/s", "s3fs"); st != (Stats{450, 400, 500, 2}) {
		t.Errorf("SeqRead MB/s = %+v", st)
	}
	if _, ok := rep.Lookup("SeqRead", "ns/op", "s3fs"); ok {
		t.Error("ns/op row kept for a figure with other units")
	}
	if _, ok := rep.Lookup("SeqRead", "MB/s", "raw-SDK"); ok {
		t.Error("Lookup found a cell that was never measured")
	}
}

func TestOrderSystems(t *testing.T) {
	tests := []struct{ seen, want []string }{
		{
			[]string{"s3fs", "zzz", "bucket-csi-MOUNT", "raw-SDK", "-", "bucket-csi-MOUNT_CACHED-warm"},
			[]string{"raw-SDK", "bucket-csi-MOUNT", "bucket-csi-MOUNT_CACHED-warm", "s3fs", "zzz", "-"},
		},
		{
			[]string{"rclone-copy", "bucket-csi-COPY", "rclone-mount2", "rclone-mount", "local-disk"},
			[]string{"local-disk", "bucket-csi-COPY", "rclone-mount", "rclone-mount2", "rclone-copy"},
		},
		{[]string{"b", "a"}, []string{"b", "a"}},
	}
	for _, tt := range tests {
		if got := orderSystems(tt.seen); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("orderSystems(%v) = %v, want %v", tt.seen, got, tt.want)
		}
	}
}

func TestLowerIsBetter(t *testing.T) {
	tests := []struct {
		unit string
		want bool
	}{
		{"ms", true}, {"s", true}, {"ns/op", true},
		{"s-per-file", true}, {"peak-RSS-MiB", true}, {"idle-RSS-MiB", true}, {"cpu-s/GiB", true},
		{"MB/s", false}, {"files/s", false}, {"ops/s", false}, {"sec", false},
	}
	for _, tt := range tests {
		if got := lowerIsBetter(tt.unit); got != tt.want {
			t.Errorf("lowerIsBetter(%q) = %v, want %v", tt.unit, got, tt.want)
		}
	}
}

func TestRowLabel(t *testing.T) {
	tests := []struct {
		row  Row
		want string
	}{
		{Row{Figure: "TTFB", Unit: "ms"}, "TTFB: time to first byte, ms (lower is better)"},
		{Row{Figure: "SeqRead", Unit: "MB/s"}, "SeqRead: sequential read, 1 MiB blocks, MB/s"},
		{Row{Figure: "Weird", Unit: "ops/s"}, "Weird, ops/s"},
	}
	for _, tt := range tests {
		if got := rowLabel(tt.row); got != tt.want {
			t.Errorf("rowLabel(%+v) = %q, want %q", tt.row, got, tt.want)
		}
	}
}
