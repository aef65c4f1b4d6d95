package main

import (
	"fmt"
	"strings"
)

// Section is the summary of the results measured at one added round-trip
// time (test/bench -bench.latency).
type Section struct {
	RTT    string
	Report *Report
}

// summarizeSections summarises each section of samples on its own.
func summarizeSections(ss []SampleSection) []Section {
	out := make([]Section, len(ss))
	for i, s := range ss {
		out[i] = Section{RTT: s.RTT, Report: Summarize(s.Samples)}
	}
	return out
}

// chartReport is the one report the chart shows: the only section's, or
// all sections together, the systems of every section after the first
// named "<system> +<rtt>".
func chartReport(ss []SampleSection) *Report {
	if len(ss) == 1 {
		return Summarize(ss[0].Samples)
	}
	var all []Sample
	for i, s := range ss {
		for _, smp := range s.Samples {
			if i > 0 {
				smp.System += " +" + s.RTT
			}
			all = append(all, smp)
		}
	}
	return Summarize(all)
}

// sectionAt returns the section of rtt ("" is baseRTT).
func sectionAt(sections []Section, rtt string) (*Report, bool) {
	if rtt == "" {
		rtt = baseRTT
	}
	for _, s := range sections {
		if s.RTT == rtt {
			return s.Report, true
		}
	}
	return nil, false
}

// evaluateSections checks each target against the section of its RTT; a
// target whose section was not run is not measured.
func evaluateSections(sections []Section, ts []Target) []Outcome {
	out := make([]Outcome, len(ts))
	for i, t := range ts {
		if rep, ok := sectionAt(sections, t.RTT); ok {
			out[i] = t.Evaluate(rep)
		} else {
			out[i] = Outcome{Target: t}
		}
	}
	return out
}

// slowdownTable renders, for each cell measured in both, the median at
// rep's round-trip time divided by the median in base, e.g. "0.42×"
// (below 1 a throughput fell; above 1 a time grew).
func slowdownTable(rep, base *Report) string {
	return systemTable(rep, func(row Row, sys string) string {
		st, ok := row.Cells[sys]
		if b0, ok0 := base.Lookup(row.Figure, row.Unit, sys); ok && ok0 && b0.Median != 0 {
			return fmt.Sprintf("%.2f×", st.Median/b0.Median)
		}
		return ""
	})
}

// rttHeading names a section: the server on loopback, or the time added.
func rttHeading(rtt string) string {
	if rtt == baseRTT {
		return "server on loopback (no round-trip time added)"
	}
	return rtt + " round-trip time added (a netdelay proxy)"
}

// sectionsBody is the Markdown report of every section: the body of a
// single section as reportBody, else each section's results, each later
// section against the first, then all targets.
func sectionsBody(sections []Section, outcomes []Outcome) string {
	if len(sections) == 1 {
		return reportBody(sections[0].Report, outcomes)
	}
	var b strings.Builder
	for _, s := range sections {
		b.WriteString("## Results, " + rttHeading(s.RTT) + "\n\n" + resultsTable(s.Report) + "\n" + runsNote(s.Report) + "\n")
	}
	base := sections[0]
	for _, s := range sections[1:] {
		b.WriteString("## " + s.RTT + " against " + base.RTT + "\n\n" +
			"Each cell is the median at " + s.RTT + " divided by the median at " + base.RTT +
			": below 1× a rate fell, above 1× a time grew.\n\n" + slowdownTable(s.Report, base.Report) + "\n")
	}
	b.WriteString("## Targets\n\n" + targetsTable(outcomes))
	return b.String()
}
