package main

import (
	"reflect"
	"strings"
	"testing"
)

func TestStripProcs(t *testing.T) {
	tests := []struct{ in, want string }{
		{"SeqRead/bucket-csi-MOUNT-2", "SeqRead/bucket-csi-MOUNT"},
		{"SeqRead/bucket-csi-MOUNT-16", "SeqRead/bucket-csi-MOUNT"},
		{"SeqRead/bucket-csi-MOUNT", "SeqRead/bucket-csi-MOUNT"},
		{"SeqRead/bucket-csi-MOUNT_CACHED-warm", "SeqRead/bucket-csi-MOUNT_CACHED-warm"},
		{"Foo/x-2a", "Foo/x-2a"},
		{"Foo/x-", "Foo/x-"},
		{"IdleRSS-8", "IdleRSS"},
		{"Foo", "Foo"},
	}
	for _, tt := range tests {
		if got := stripProcs(tt.in); got != tt.want {
			t.Errorf("stripProcs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestStripRun(t *testing.T) {
	tests := []struct{ in, want string }{
		{"SeqRead/s3fs#01", "SeqRead/s3fs"},
		{"SeqRead/bucket-csi-MOUNT_CACHED#102", "SeqRead/bucket-csi-MOUNT_CACHED"},
		{"SeqRead/s3fs", "SeqRead/s3fs"},
		{"Foo/x#1a", "Foo/x#1a"},
		{"Foo/x#", "Foo/x#"},
		{"Foo/a#01/b", "Foo/a#01/b"},
	}
	for _, tt := range tests {
		if got := stripRun(tt.in); got != tt.want {
			t.Errorf("stripRun(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSplitName(t *testing.T) {
	tests := []struct{ in, figure, system string }{
		{"SeqRead/raw-SDK", "SeqRead", "raw-SDK"},
		{"SeqRead/bucket-csi-MOUNT/streams=8/chunk=16MiB", "SeqRead", "bucket-csi-MOUNT/streams=8/chunk=16MiB"},
		{"TTFB/size=1GiB", "TTFB", "size=1GiB"},
		{"IdleRSS", "IdleRSS", "-"},
	}
	for _, tt := range tests {
		f, s := splitName(tt.in)
		if f != tt.figure || s != tt.system {
			t.Errorf("splitName(%q) = %q, %q; want %q, %q", tt.in, f, s, tt.figure, tt.system)
		}
	}
}

func TestParseLine(t *testing.T) {
	tests := []struct {
		name string
		line string
		ok   bool
		want []Sample
	}{
		{
			name: "custom units",
			line: "BenchmarkSeqRead/bucket-csi-MOUNT-2   \t       1\t3456789012 ns/op\t 310.50 MB/s\t 0.85 cpu-s/GiB\t 95.0 peak-RSS-MiB",
			ok:   true,
			want: []Sample{
				{"SeqRead", "bucket-csi-MOUNT", "ns/op", 3456789012},
				{"SeqRead", "bucket-csi-MOUNT", "MB/s", 310.5},
				{"SeqRead", "bucket-csi-MOUNT", "cpu-s/GiB", 0.85},
				{"SeqRead", "bucket-csi-MOUNT", "peak-RSS-MiB", 95},
			},
		},
		{
			name: "slash and equals in system, benchmem dropped",
			line: "BenchmarkRandRead4K/rclone-mount/vfs=full-4 10 1200 ns/op 64 B/op 2 allocs/op",
			ok:   true,
			want: []Sample{{"RandRead4K", "rclone-mount/vfs=full", "ns/op", 1200}},
		},
		{
			name: "no slash",
			line: "BenchmarkIdleRSS 1 5 ns/op 41.2 idle-RSS-MiB",
			ok:   true,
			want: []Sample{{"IdleRSS", "-", "ns/op", 5}, {"IdleRSS", "-", "idle-RSS-MiB", 41.2}},
		},
		{name: "bare name", line: "BenchmarkSeqRead/s3fs-2"},
		{name: "fail", line: "--- FAIL: BenchmarkSeqRead/s3fs-2"},
		{name: "goos", line: "goos: linux"},
		{name: "pkg", line: "pkg: github.com/bucket-csi/bucket-csi/test"},
		{name: "pass", line: "PASS"},
		{name: "ok", line: "ok  \tgithub.com/bucket-csi/bucket-csi/test\t12.3s"},
		{name: "log line", line: "    bench_test.go:42: Benchmark started 3 times"},
		{name: "name then text", line: "BenchmarkX-2 mounting at /tmp/x"},
		{name: "odd fields", line: "BenchmarkX-2 1 100 ns/op 5"},
		{name: "bad value", line: "BenchmarkX-2 1 abc ns/op"},
		{name: "NaN value", line: "BenchmarkX-2 1 NaN MB/s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseLine(tt.line)
			if ok != tt.ok || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseLine(%q) = %v, %v; want %v, %v", tt.line, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestParse(t *testing.T) {
	in := `goos: linux
goarch: amd64
pkg: github.com/bucket-csi/bucket-csi/test
cpu: AMD EPYC
BenchmarkSeqRead/raw-SDK-2 1 100 ns/op 1400 MB/s
2026/11/24 10:00:00 mount ready
BenchmarkSeqRead/raw-SDK-2 1 100 ns/op 1500 MB/s
PASS
ok  	github.com/bucket-csi/bucket-csi/test	3.2s
`
	got, err := Parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Sample{
		{"SeqRead", "raw-SDK", "ns/op", 100}, {"SeqRead", "raw-SDK", "MB/s", 1400},
		{"SeqRead", "raw-SDK", "ns/op", 100}, {"SeqRead", "raw-SDK", "MB/s", 1500},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse = %v, want %v", got, want)
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{"", "goos: linux\nPASS\n", "BenchmarkX-2 1 8 B/op 1 allocs/op\n"} {
		if got, err := Parse(strings.NewReader(in)); err == nil {
			t.Errorf("Parse(%q) = %v, nil; want an error", in, got)
		}
	}
}

func TestParseSections(t *testing.T) {
	in := `rtt: 0s
BenchmarkSeqRead/raw-SDK-2 1 100 ns/op 1400 MB/s
rtt: 20ms
BenchmarkSeqRead/raw-SDK-2 1 300 ns/op 700 MB/s
rtt: 0s
BenchmarkSeqRead/s3fs-2 1 100 ns/op 500 MB/s
BenchmarkSeqRead/s3fs#01-2 1 110 ns/op 450 MB/s
BenchmarkSeqRead/s3fs#02 1 120 ns/op 400 MB/s
rtt: 50ms
PASS
`
	got, err := ParseSections(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []SampleSection{
		{RTT: "0s", Samples: []Sample{{"SeqRead", "raw-SDK", "ns/op", 100}, {"SeqRead", "raw-SDK", "MB/s", 1400},
			{"SeqRead", "s3fs", "ns/op", 100}, {"SeqRead", "s3fs", "MB/s", 500},
			{"SeqRead", "s3fs", "ns/op", 110}, {"SeqRead", "s3fs", "MB/s", 450},
			{"SeqRead", "s3fs", "ns/op", 120}, {"SeqRead", "s3fs", "MB/s", 400}}},
		{RTT: "20ms", Samples: []Sample{{"SeqRead", "raw-SDK", "ns/op", 300}, {"SeqRead", "raw-SDK", "MB/s", 700}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseSections = %v, want %v", got, want)
	}
	// Without an rtt line everything is the loopback section.
	got, err = ParseSections(strings.NewReader("BenchmarkA/s-2 1 5 MB/s\n"))
	if err != nil || len(got) != 1 || got[0].RTT != baseRTT {
		t.Errorf("ParseSections without rtt lines = %v, %v", got, err)
	}
}
