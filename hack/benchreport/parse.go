package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Sample is one value/unit pair of one benchmark result line.
type Sample struct {
	// Figure is the part of the benchmark name between "Benchmark" and the
	// first '/', e.g. "SeqRead".
	Figure string
	// System is everything after the first '/' (it may contain '/' and '='),
	// or "-" when the name has no '/'.
	System string
	// Unit is the unit as printed by the benchmark, e.g. "MB/s" or "ns/op".
	Unit string
	// Value is the measured value in Unit.
	Value float64
}

// ignoredUnits are the allocation figures of -benchmem: they say nothing
// about the systems being compared, so Parse drops them.
var ignoredUnits = map[string]bool{"B/op": true, "allocs/op": true}

// maxLine is the longest input line Parse accepts; longer lines (a huge log
// line, say) make Parse fail rather than be silently split.
const maxLine = 16 << 20

// Parse reads `go test -bench` output (possibly from -count N, so a name may
// repeat, or from rounds, whose later runs carry "#01", "#02": stripRun)
// and returns its samples in input order. Lines that are not well-formed
// benchmark result lines (goos:, pkg:, PASS, logs, a bare benchmark name)
// are ignored, as are the units B/op and allocs/op. It returns an error
// when r cannot be read or when the input holds no benchmark result at all.
func Parse(r io.Reader) ([]Sample, error) {
	sections, err := ParseSections(r)
	if err != nil {
		return nil, err
	}
	var out []Sample
	for _, s := range sections {
		out = append(out, s.Samples...)
	}
	return out, nil
}

// baseRTT is the round-trip time of results that follow no "rtt:" line:
// the server on loopback, nothing added.
const baseRTT = "0s"

// SampleSection is the samples measured at one added round-trip time.
type SampleSection struct {
	// RTT is the value of the "rtt:" configuration line (test/bench
	// prints it, e.g. "20ms") before the samples, or baseRTT.
	RTT     string
	Samples []Sample
}

// ParseSections is Parse keeping apart the samples of each round-trip
// time: a configuration line "rtt: <duration>" files the results after
// it under that time (a time seen before continues its section).
// Sections are in order of first appearance; those without samples are
// left out.
func ParseSections(r io.Reader) ([]SampleSection, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	var sections []SampleSection
	index := map[string]int{}
	rtt := baseRTT
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "rtt:"); ok && strings.TrimSpace(v) != "" {
			rtt = strings.TrimSpace(v)
			continue
		}
		samples, ok := parseLine(line)
		if !ok || len(samples) == 0 {
			continue
		}
		i, seen := index[rtt]
		if !seen {
			i = len(sections)
			index[rtt] = i
			sections = append(sections, SampleSection{RTT: rtt})
		}
		sections[i].Samples = append(sections[i].Samples, samples...)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading benchmark output: %w", err)
	}
	if len(sections) == 0 {
		return nil, errors.New("no benchmark results in input")
	}
	return sections, nil
}

// parseLine parses one benchmark result line: a name starting with
// "Benchmark", an iteration count, then value/unit pairs. It reports false
// for any other line, including one whose values do not all parse as finite
// numbers. The returned samples leave out ignoredUnits.
func parseLine(line string) ([]Sample, bool) {
	f := strings.Fields(line)
	if len(f) < 4 || len(f)%2 != 0 || !strings.HasPrefix(f[0], "Benchmark") {
		return nil, false
	}
	if _, err := strconv.ParseUint(f[1], 10, 64); err != nil {
		return nil, false
	}
	figure, system := splitName(stripRun(stripProcs(strings.TrimPrefix(f[0], "Benchmark"))))
	if figure == "" {
		return nil, false
	}
	var out []Sample
	for i := 2; i < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, false
		}
		if ignoredUnits[f[i+1]] {
			continue
		}
		out = append(out, Sample{Figure: figure, System: system, Unit: f[i+1], Value: v})
	}
	return out, true
}

// stripProcs removes the "-<GOMAXPROCS>" suffix that the testing package
// appends to benchmark names: a '-' followed by one or more digits at the
// very end. Any other name is returned unchanged.
func stripProcs(name string) string { return cutNumber(name, '-') }

// stripRun removes the "#<n>" suffix by which the testing package tells a
// sub-benchmark's later runs under one parent apart (test/bench runs its
// systems in rounds: "SeqRead/s3fs", "SeqRead/s3fs#01", ...), so that they
// are filed with the first: a '#' followed by one or more digits at the
// very end. Any other name is returned unchanged.
func stripRun(name string) string { return cutNumber(name, '#') }

// cutNumber removes sep and the digits after it from the end of name when
// name ends in sep followed by one or more digits; otherwise it returns
// name unchanged.
func cutNumber(name string, sep byte) string {
	i := strings.LastIndexByte(name, sep)
	if i < 0 || i == len(name)-1 {
		return name
	}
	for _, c := range name[i+1:] {
		if c < '0' || c > '9' {
			return name
		}
	}
	return name[:i]
}

// splitName splits a benchmark name (without "Benchmark" and the
// GOMAXPROCS suffix) at its first '/' into figure and system. A name
// without '/' has system "-".
func splitName(name string) (figure, system string) {
	if i := strings.IndexByte(name, '/'); i >= 0 {
		return name[:i], name[i+1:]
	}
	return name, "-"
}
