package main

import (
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFormatNum(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{0, "0"}, {310.5, "310"}, {310.51, "311"}, {1416.3, "1416"}, {3456789012, "3456789012"},
		{95.0, "95"}, {41.24, "41.2"}, {0.8504, "0.85"}, {0.4166, "0.417"}, {9.996, "10"},
		{0.000012345, "0.0000123"}, {-2.345, "-2.35"}, {12.5, "12.5"},
	}
	for _, tt := range tests {
		if got := formatNum(tt.in); got != tt.want {
			t.Errorf("formatNum(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFormatCell(t *testing.T) {
	tests := []struct {
		st   Stats
		want string
	}{
		{Stats{310.5, 310.5, 310.5, 1}, "310"},
		{Stats{320, 301.2, 335.7, 5}, "320 (301–336)"},
		{Stats{0.85, 0.8, 0.9, 2}, "0.85 (0.8–0.9)"},
	}
	for _, tt := range tests {
		if got := formatCell(tt.st); got != tt.want {
			t.Errorf("formatCell(%+v) = %q, want %q", tt.st, got, tt.want)
		}
	}
}

func TestTableRowEscapes(t *testing.T) {
	if got, want := tableRow("a|b", "", "c"), `| a\|b |  | c |`+"\n"; got != want {
		t.Errorf("tableRow = %q, want %q", got, want)
	}
}

func TestResultsTable(t *testing.T) {
	rep := Summarize([]Sample{
		{"SeqRead", "s3fs", "MB/s", 400}, {"SeqRead", "bucket-csi-MOUNT", "MB/s", 300},
		{"SeqRead", "bucket-csi-MOUNT", "MB/s", 320}, {"SeqRead", "bucket-csi-MOUNT", "MB/s", 310},
		{"TTFB", "x|y", "ns/op", 2.5e6},
	})
	want := `| figure | bucket-csi-MOUNT | s3fs | x\|y |
|---|---|---|---|
| SeqRead: sequential read, 1 MiB blocks, MB/s | 310 (300–320) | 400 |  |
| TTFB: time to first byte, ms (lower is better) |  |  | 2.5 |
`
	if got := resultsTable(rep); got != want {
		t.Errorf("resultsTable =\n%s\nwant\n%s", got, want)
	}
	if got, want := runsNote(rep), "Cells are median (min–max) of n runs, n = 1–3 (cells differ). A cell from a single run shows just that value.\n"; got != want {
		t.Errorf("runsNote = %q, want %q", got, want)
	}
}

func TestRunsNoteUniform(t *testing.T) {
	rep := Summarize([]Sample{{"A", "s", "MB/s", 1}, {"A", "s", "MB/s", 2}, {"B", "s", "MB/s", 1}, {"B", "s", "MB/s", 3}})
	if got, want := runsNote(rep), "Cells are median (min–max) of n runs, n = 2.\n"; got != want {
		t.Errorf("runsNote = %q, want %q", got, want)
	}
}

func TestEvaluate(t *testing.T) {
	rep := Summarize([]Sample{
		{"SeqRead", "bucket-csi-MOUNT", "MB/s", 600}, {"SeqRead", "raw-SDK", "MB/s", 1000},
		{"SeqRead", "rclone-mount", "MB/s", 400}, {"SeqRead", "s3fs", "MB/s", 751.3},
		{"SeqRead", "rclone-copy", "MB/s", 749.7}, {"SeqRead", "gcsfuse", "MB/s", 750.0004},
		{"IdleRSS", "bucket-csi-MOUNT", "idle-RSS-MiB", 41.24},
		{"IdleRSS", "bucket-csi-MOUNT", "idle-RSS-MiB", 80},
		{"IdleRSS", "bucket-csi-MOUNT", "idle-RSS-MiB", 30},
	})
	ratio := func(base string, limit float64) Target {
		return Target{Name: "r", Figure: "SeqRead", Unit: "MB/s", System: "bucket-csi-MOUNT", Baseline: base, Limit: limit}
	}
	rss := func(b Bound, limit float64) Target {
		return Target{Name: "a", Figure: "IdleRSS", Unit: "idle-RSS-MiB", System: "bucket-csi-MOUNT", Bound: b, Limit: limit, Suffix: "MiB"}
	}
	tests := []struct {
		name          string
		target        Target
		measured, met string
	}{
		{"ratio met", ratio("raw-SDK", 0.5), "0.60×", "yes"},
		{"ratio met at limit", ratio("raw-SDK", 0.6), "0.60×", "yes"},
		{"ratio not met", ratio("rclone-mount", 2), "1.50×", "**no**"},
		{"ratio rounding onto the limit", ratio("s3fs", 0.8), "0.799×", "**no**"},
		{"ratio met, rounding onto the limit", ratio("rclone-copy", 0.8), "0.8003×", "yes"},
		{"ratio a hair under the limit", ratio("gcsfuse", 0.8), "0.7999996×", "**no**"},
		{"absolute rounding onto the limit", rss(Below, 41.2), "41.24 MiB", "**no**"},
		{"baseline missing", ratio("rclone-mount2", 1.5), "not measured", "–"},
		{"system missing", Target{Figure: "SeqRead", Unit: "MB/s", System: "bucket-csi-COPY", Baseline: "raw-SDK"}, "not measured", "–"},
		{"row missing", Target{Figure: "CopyLarge", Unit: "MB/s", System: "bucket-csi-COPY", Baseline: "raw-SDK"}, "not measured", "–"},
		{"absolute below met", rss(Below, 64), "41.2 MiB", "yes"},
		{"absolute below not met", rss(Below, 41.24), "41.2 MiB", "**no**"},
		{"absolute at most, at the limit", rss(AtMost, 41.24), "41.2 MiB", "yes"},
		{"absolute at most, over it", rss(AtMost, 41.2), "41.24 MiB", "**no**"},
		{"absolute at least met", rss(AtLeast, 41), "41.2 MiB", "yes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.target.Evaluate(rep)
			if o.measuredText() != tt.measured || o.metText() != tt.met {
				t.Errorf("got %q, %q; want %q, %q (%+v)", o.measuredText(), o.metText(), tt.measured, tt.met, o)
			}
		})
	}
}

func TestBuiltinTargets(t *testing.T) {
	rep := Summarize([]Sample{
		{"SmallFiles", "bucket-csi-MOUNT", "files/s", 900}, {"SmallFiles", "s3fs", "files/s", 600},
		{"SmallFiles", "rclone-mount", "files/s", 700},
	})
	got := targetsTable(evaluateAll(rep, targets))
	for _, line := range []string{
		"| target | measured | met? | why not |\n|---|---|---|---|\n",
		"| small files through MOUNT ≥ 1.5× rclone mount | 1.29× | **no** | each file costs",
		"| small files through MOUNT ≥ 1.5× s3fs | 1.50× | yes |  |\n",
		"| idle FUSE server < 64 MiB RSS | not measured | – |  |\n",
	} {
		if !strings.Contains(got, line) {
			t.Errorf("targets table lacks %q:\n%s", line, got)
		}
	}
	if n := strings.Count(got, "\n"); n != 2+len(targets) {
		t.Errorf("targets table has %d lines, want %d", n, 2+len(targets))
	}
}

// TestSkyPilotTargets: the warm read is compared with SkyPilot's warm
// cache, `ls -l` times must be below it, and every target name is unique.
func TestSkyPilotTargets(t *testing.T) {
	rep := Summarize([]Sample{
		{"SeqRead", "bucket-csi-MOUNT_CACHED-warm", "MB/s", 600}, {"SeqRead", "rclone-skypilot-warm", "MB/s", 400},
		{"SeqRead", "rclone-skypilot", "MB/s", 6000},
		{"ListDir", "bucket-csi-MOUNT_CACHED-cold", "ns/op", 3e9}, {"ListDir", "rclone-skypilot", "ns/op", 2e9},
	})
	got := targetsTable(evaluateAll(rep, skyPilotTargets()))
	for _, line := range []string{
		"| MOUNT_CACHED sequential read, warm ≥ 1× SkyPilot-flags rclone | 1.50× | yes |",
		"| MOUNT_CACHED `ls -l` time < 1× SkyPilot-flags rclone | 1.50× | **no** |",
		"| at 20 ms: MOUNT_CACHED write ≥ 1× SkyPilot-flags rclone | not measured | – |",
	} {
		if !strings.Contains(got, line) {
			t.Errorf("targets table lacks %q:\n%s", line, got)
		}
	}
	seen := map[string]bool{}
	for _, tg := range allTargets() {
		if seen[tg.Name] {
			t.Errorf("two targets named %q", tg.Name)
		}
		seen[tg.Name] = true
	}
}

// svgBar is one bar found in the chart.
type svgBar struct{ class, width string }

// parseSVG checks that doc is well-formed XML with an <svg> root and
// returns its bars in document order.
func parseSVG(t *testing.T, doc string) []svgBar {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(doc))
	var bars []svgBar
	root := ""
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed: %v\n%s", err, doc)
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if root == "" {
			root = se.Name.Local
		}
		attrs := map[string]string{}
		for _, a := range se.Attr {
			attrs[a.Name.Local] = a.Value
		}
		if se.Name.Local == "rect" && strings.HasPrefix(attrs["class"], "bar") {
			bars = append(bars, svgBar{attrs["class"], attrs["width"]})
		}
	}
	if root != "svg" {
		t.Fatalf("root element %q, want svg", root)
	}
	return bars
}

func TestSVG(t *testing.T) {
	rep := Summarize([]Sample{
		{"SeqRead", "raw-SDK", "MB/s", 1000}, {"SeqRead", "bucket-csi-MOUNT", "MB/s", 500},
		{"SeqRead", "raw-SDK", "MB/s", 1080}, {"SeqRead", "bucket-csi-MOUNT", "MB/s", 540},
		{"Odd<&>", `sys"'<x>&`, "ms", 3},
	})
	doc := SVG(rep, `A & B <chart>`)
	bars := parseSVG(t, doc)
	want := []svgBar{{"bar base", "520.0"}, {"bar ours", "260.0"}, {"bar base", "540.0"}}
	if len(bars) != len(want) {
		t.Fatalf("bars = %v, want %v", bars, want)
	}
	for i := range want {
		if bars[i] != want[i] {
			t.Errorf("bar %d = %v, want %v", i, bars[i], want[i])
		}
	}
	for _, s := range []string{"A &amp; B &lt;chart&gt;", "ms · lower is better", "sys&#34;&#39;&lt;x&gt;&amp;", `width="900"`} {
		if !strings.Contains(doc, s) {
			t.Errorf("SVG lacks %q", s)
		}
	}
	if n := strings.Count(doc, `class="whisker"`); n != 2 {
		t.Errorf("%d whiskers, want 2 (single runs have none)", n)
	}
}

func TestRun(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "bench.txt")
	md, svg := filepath.Join(dir, "r.md"), filepath.Join(dir, "c.svg")
	input := "goos: linux\nBenchmarkIdleRSS/bucket-csi-MOUNT-2 1 5 ns/op 41.2 idle-RSS-MiB\nPASS\n"
	if err := os.WriteFile(in, []byte(input), 0o644); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := run([]string{"-in", in, "-md", md, "-svg", svg}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "| idle FUSE server < 64 MiB RSS | 41.2 MiB | yes |") {
		t.Errorf("stdout lacks the RSS target:\n%s", out.String())
	}
	mdText, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	if first := strings.SplitN(string(mdText), "\n", 2)[0]; first != "<!-- generated by hack/benchreport from "+in+"; do not edit -->" {
		t.Errorf("first line = %q", first)
	}
	svgText, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	if bars := parseSVG(t, string(svgText)); len(bars) != 1 {
		t.Errorf("SVG has %d bars, want 1", len(bars))
	}

	empty := filepath.Join(dir, "empty.txt")
	if err := os.WriteFile(empty, []byte("PASS\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"-in", filepath.Join(dir, "missing.txt")}, {"-in", empty}} {
		if err := run(args, io.Discard); err == nil {
			t.Errorf("run(%q) succeeded, want an error", args)
		}
	}
}

func TestRunSections(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "bench.txt")
	input := `rtt: 0s
BenchmarkSeqRead/raw-SDK-2 1 5 ns/op 1000 MB/s
BenchmarkSeqRead/bucket-csi-MOUNT-2 1 5 ns/op 400 MB/s
rtt: 20ms
BenchmarkSeqRead/raw-SDK-2 1 5 ns/op 500 MB/s
BenchmarkSeqRead/bucket-csi-MOUNT-2 1 5 ns/op 450 MB/s
`
	if err := os.WriteFile(in, []byte(input), 0o644); err != nil {
		t.Fatal(err)
	}
	svg := filepath.Join(dir, "c.svg")
	var out strings.Builder
	if err := run([]string{"-in", in, "-svg", svg}, &out); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		"## Results, server on loopback (no round-trip time added)\n",
		"## Results, 20ms round-trip time added (a netdelay proxy)\n",
		"## 20ms against 0s\n",
		"| SeqRead: sequential read, 1 MiB blocks, MB/s | 0.50× | 1.12× |\n",
		"| MOUNT sequential read ≥ 0.6× raw GET | 0.40× | **no** |",
		"| at 20 ms: MOUNT sequential read ≥ 0.8× raw GET | 0.90× | yes |",
		"| at 20 ms: small files through MOUNT ≥ 3× s3fs | not measured | – |",
	} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("report lacks %q:\n%s", s, out.String())
		}
	}
	svgText, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	if bars := parseSVG(t, string(svgText)); len(bars) != 4 {
		t.Errorf("SVG has %d bars, want 4 (both round-trip times)", len(bars))
	}
	if !strings.Contains(string(svgText), "bucket-csi-MOUNT +20ms") {
		t.Error("SVG does not name the 20ms systems")
	}
}
