package main

import (
	"slices"
	"strings"
)

// Stats summarises the samples of one table cell.
type Stats struct {
	Median, Min, Max float64
	// N is the number of samples (runs); it is at least 1.
	N int
}

// Row is one row of the results table: one figure measured in one unit.
type Row struct {
	Figure string
	// Unit is the unit shown, which is "ms" for a figure reported only in
	// ns/op (values are then converted from ns).
	Unit string
	// Cells holds the statistics by system; a system that did not report
	// this row has no entry.
	Cells map[string]Stats
}

// Report is the summary of one benchmark run.
type Report struct {
	// Rows are in order of first appearance of (figure, unit) in the input.
	Rows []Row
	// Systems are the table columns: the systems of systemOrder that are
	// present, then any other system in order of first appearance.
	Systems []string
}

// systemOrder is the fixed column order of the systems we know.
var systemOrder = []string{
	"raw-SDK", "local-disk",
	"bucket-csi-MOUNT", "bucket-csi-MOUNT_CACHED-cold", "bucket-csi-MOUNT_CACHED-warm",
	"bucket-csi-MOUNT_CACHED-warm-ro", "bucket-csi-MOUNT_CACHED", "bucket-csi-COPY",
	"rclone-mount", "rclone-mount2", "s3fs", "rclone-skypilot", "rclone-skypilot-warm", "rclone-copy", "gcsfuse",
}

// figureDescriptions make row labels readable; figures not listed here are
// shown by their raw name only.
var figureDescriptions = map[string]string{
	"SeqRead":       "sequential read, 1 MiB blocks",
	"ParallelRead":  "16 readers at once, a sixteenth of the object each",
	"RandRead4K":    "random 4 KiB reads",
	"RandRead1M":    "random 1 MiB reads",
	"TTFB":          "time to first byte",
	"SmallFiles":    "5,000 × 16 KiB files read one by one",
	"ListDir":       "`ls -l` of 10,000 entries",
	"CachedWrite":   "write through the mount",
	"CachedWrites":  "4 files written one after another",
	"SmallWrites":   "1,000 × 16 KiB files written one by one",
	"CopySmall":     "COPY of 5,000 × 16 KiB files",
	"CopyLarge":     "COPY of the 1 GiB object",
	"NodeStage":     "NodeStage latency",
	"IdleRSS":       "idle FUSE server",
	"GCSSeqRead":    "GCS emulator: sequential read, 1 MiB blocks",
	"GCSSmallFiles": "GCS emulator: small files read one by one",
}

// rowKey identifies a row.
type rowKey struct{ figure, unit string }

// Summarize groups samples by (figure, unit, system) and computes the
// statistics of each group. The unit ns/op is kept only for a figure that
// reports no other unit, and is then shown as ms (value/1e6). samples must
// be non-empty for the report to have rows; samples is not modified.
func Summarize(samples []Sample) *Report {
	units := unitsByFigure(samples)
	var order []rowKey
	var seen []string
	values := map[rowKey]map[string][]float64{}
	for _, s := range samples {
		unit, v := s.Unit, s.Value
		if unit == "ns/op" {
			if len(units[s.Figure]) > 1 {
				continue
			}
			unit, v = "ms", v/1e6
		}
		k := rowKey{s.Figure, unit}
		if values[k] == nil {
			values[k] = map[string][]float64{}
			order = append(order, k)
		}
		values[k][s.System] = append(values[k][s.System], v)
		if !slices.Contains(seen, s.System) {
			seen = append(seen, s.System)
		}
	}
	rep := &Report{Systems: orderSystems(seen)}
	for _, k := range order {
		row := Row{Figure: k.figure, Unit: k.unit, Cells: map[string]Stats{}}
		for sys, vs := range values[k] {
			row.Cells[sys] = summarize(vs)
		}
		rep.Rows = append(rep.Rows, row)
	}
	return rep
}

// unitsByFigure returns the set of units each figure reports.
func unitsByFigure(samples []Sample) map[string]map[string]bool {
	m := map[string]map[string]bool{}
	for _, s := range samples {
		if m[s.Figure] == nil {
			m[s.Figure] = map[string]bool{}
		}
		m[s.Figure][s.Unit] = true
	}
	return m
}

// summarize returns median, min, max and count of a non-empty slice without
// modifying it. The median of an even count is the mean of the two middle
// values.
func summarize(vs []float64) Stats {
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return Stats{Median: med, Min: s[0], Max: s[n-1], N: n}
}

// orderSystems returns the systems of systemOrder that occur in seen, in
// that order, followed by the other systems of seen in their given order.
func orderSystems(seen []string) []string {
	var out []string
	for _, sys := range systemOrder {
		if slices.Contains(seen, sys) {
			out = append(out, sys)
		}
	}
	for _, sys := range seen {
		if !slices.Contains(systemOrder, sys) {
			out = append(out, sys)
		}
	}
	return out
}

// Lookup returns the statistics of system in the row (figure, unit), and
// false when that cell was not measured.
func (r *Report) Lookup(figure, unit, system string) (Stats, bool) {
	for _, row := range r.Rows {
		if row.Figure == figure && row.Unit == unit {
			st, ok := row.Cells[system]
			return st, ok
		}
	}
	return Stats{}, false
}

// lowerIsBetter reports whether smaller values of unit are better: time
// units (ms, s, ns/op), units starting with "s-", and any unit mentioning
// RSS or cpu-s.
func lowerIsBetter(unit string) bool {
	switch unit {
	case "ms", "s", "ns/op":
		return true
	}
	return strings.HasPrefix(unit, "s-") || strings.Contains(unit, "RSS") ||
		strings.Contains(unit, "cpu-s")
}

// figureTitle returns "Figure: description" for a figure with a known
// description and the raw figure name otherwise.
func figureTitle(figure string) string {
	if d, ok := figureDescriptions[figure]; ok {
		return figure + ": " + d
	}
	return figure
}

// rowLabel is the first cell of a results row, e.g.
// "TTFB: time to first byte, ms (lower is better)" or "Foo, MB/s".
func rowLabel(row Row) string {
	s := figureTitle(row.Figure) + ", " + row.Unit
	if lowerIsBetter(row.Unit) {
		s += " (lower is better)"
	}
	return s
}

// runCounts returns the smallest and largest N over all cells of rep.
func runCounts(rep *Report) (lo, hi int) {
	for _, row := range rep.Rows {
		for _, st := range row.Cells {
			if lo == 0 || st.N < lo {
				lo = st.N
			}
			hi = max(hi, st.N)
		}
	}
	return lo, hi
}
