package main

import (
	"fmt"
	"strings"
)

// Bound says on which side of a target's Limit the target is met.
type Bound int

const (
	// AtLeast is met when the measurement is >= Limit.
	AtLeast Bound = iota
	// Below is met when the measurement is < Limit.
	Below
)

// Target is one goal of docs/benchmarks.md, checked against the medians of
// a run. Figure and Unit name a row of the Report (Unit is the shown unit,
// so "ms" for ns/op figures). With Baseline empty the target is absolute:
// the median of System is compared with Limit and shown followed by Suffix.
// Otherwise the measurement is the ratio median(System)/median(Baseline),
// shown as e.g. "0.42×".
type Target struct {
	Name     string
	Figure   string
	Unit     string
	System   string
	Baseline string
	Bound    Bound
	Limit    float64
	Suffix   string
}

// targets are the performance goals of the project.
var targets = []Target{
	{Name: "MOUNT sequential read ≥ 0.5× raw GET", Figure: "SeqRead", Unit: "MB/s",
		System: "bucket-csi-MOUNT", Baseline: "raw-SDK", Bound: AtLeast, Limit: 0.5},
	{Name: "MOUNT sequential read ≥ 2× rclone mount", Figure: "SeqRead", Unit: "MB/s",
		System: "bucket-csi-MOUNT", Baseline: "rclone-mount", Bound: AtLeast, Limit: 2},
	{Name: "small files through MOUNT ≥ 1.5× rclone mount", Figure: "SmallFiles", Unit: "files/s",
		System: "bucket-csi-MOUNT", Baseline: "rclone-mount", Bound: AtLeast, Limit: 1.5},
	{Name: "small files through MOUNT ≥ 1.5× s3fs", Figure: "SmallFiles", Unit: "files/s",
		System: "bucket-csi-MOUNT", Baseline: "s3fs", Bound: AtLeast, Limit: 1.5},
	{Name: "COPY small files ≥ 2.5× rclone copy", Figure: "CopySmall", Unit: "files/s",
		System: "bucket-csi-COPY", Baseline: "rclone-copy", Bound: AtLeast, Limit: 2.5},
	{Name: "COPY small files ≥ 0.6× raw parallel GET", Figure: "CopySmall", Unit: "files/s",
		System: "bucket-csi-COPY", Baseline: "raw-SDK", Bound: AtLeast, Limit: 0.6},
	{Name: "COPY large object ≥ 0.8× raw GET", Figure: "CopyLarge", Unit: "MB/s",
		System: "bucket-csi-COPY", Baseline: "raw-SDK", Bound: AtLeast, Limit: 0.8},
	{Name: "MOUNT_CACHED warm read ≥ 0.8× local disk", Figure: "SeqRead", Unit: "MB/s",
		System: "bucket-csi-MOUNT_CACHED-warm", Baseline: "local-disk", Bound: AtLeast, Limit: 0.8},
	{Name: "MOUNT_CACHED write ≥ 0.8× local disk", Figure: "CachedWrite", Unit: "MB/s",
		System: "bucket-csi-MOUNT_CACHED", Baseline: "local-disk", Bound: AtLeast, Limit: 0.8},
	{Name: "idle FUSE server < 64 MiB RSS", Figure: "IdleRSS", Unit: "idle-RSS-MiB",
		System: "bucket-csi-MOUNT", Bound: Below, Limit: 64, Suffix: "MiB"},
}

// Outcome is the result of checking one Target.
type Outcome struct {
	Target Target
	// Measured is false when a needed cell is missing (or the baseline
	// median is zero); Value and Met are then meaningless.
	Measured bool
	Value    float64
	Met      bool
}

// Evaluate checks t against the medians of rep.
func (t Target) Evaluate(rep *Report) Outcome {
	st, ok := rep.Lookup(t.Figure, t.Unit, t.System)
	if !ok {
		return Outcome{Target: t}
	}
	v := st.Median
	if t.Baseline != "" {
		base, ok := rep.Lookup(t.Figure, t.Unit, t.Baseline)
		if !ok || base.Median == 0 {
			return Outcome{Target: t}
		}
		v /= base.Median
	}
	met := v >= t.Limit
	if t.Bound == Below {
		met = v < t.Limit
	}
	return Outcome{Target: t, Measured: true, Value: v, Met: met}
}

// evaluateAll checks every target of ts against rep, in order.
func evaluateAll(rep *Report, ts []Target) []Outcome {
	out := make([]Outcome, len(ts))
	for i, t := range ts {
		out[i] = t.Evaluate(rep)
	}
	return out
}

// measuredText is the "measured" cell: "0.42×" for a ratio, "41.2 MiB" for
// an absolute target, "not measured" when a cell is missing.
func (o Outcome) measuredText() string {
	switch {
	case !o.Measured:
		return "not measured"
	case o.Target.Baseline != "":
		return fmt.Sprintf("%.2f×", o.Value)
	default:
		return strings.TrimSpace(formatNum(o.Value) + " " + o.Target.Suffix)
	}
}

// metText is the "met?" cell: "yes", "**no**", or "–" when not measured.
func (o Outcome) metText() string {
	switch {
	case !o.Measured:
		return "–"
	case o.Met:
		return "yes"
	default:
		return "**no**"
	}
}

// targetsTable renders outcomes as the Markdown table
// | target | measured | met? |.
func targetsTable(outcomes []Outcome) string {
	var b strings.Builder
	b.WriteString(tableRow("target", "measured", "met?"))
	b.WriteString("|---|---|---|\n")
	for _, o := range outcomes {
		b.WriteString(tableRow(o.Target.Name, o.measuredText(), o.metText()))
	}
	return b.String()
}
