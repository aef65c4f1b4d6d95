// Command benchreport turns `go test -bench` output into the results table
// and chart of docs/benchmarks.md:
//
//	go run ./hack/benchreport -in bin/bench.txt -md docs/benchmarks-results.md -svg docs/benchmarks.svg [-title "..."]
//
// It summarises every (figure, unit, system) as median, min and max over
// the runs (test/bench's -bench.rounds N, whose later runs Go names
// "<system>#01", ...; or -count N), checks the project's performance
// targets against the medians, writes a generated Markdown file (-md)
// and an SVG chart (-svg) when asked, and prints the results and targets
// tables to stdout. Results after an "rtt: <duration>" line (test/bench
// -bench.latency) form a table of their own, followed by their ratios to
// the first table's, and the targets at that round-trip time are checked
// against them.
//
// It exits non-zero only on bad input (an unreadable file, no benchmark
// results) or when an output cannot be written; unmet targets are reported,
// not treated as errors.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

// run is main without the process: it parses args, reads the input, writes
// the requested files and prints the report to stdout.
func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("benchreport", flag.ContinueOnError)
	in := fs.String("in", "bin/bench.txt", "`go test -bench` output to read")
	mdPath := fs.String("md", "", "write the generated Markdown here (skipped when empty)")
	svgPath := fs.String("svg", "", "write the SVG chart here (skipped when empty)")
	title := fs.String("title", "bucket-csi benchmarks", "title of the SVG chart")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	ss, err := load(*in)
	if err != nil {
		return err
	}
	sections := summarizeSections(ss)
	outcomes := evaluateSections(sections, allTargets())
	body := sectionsBody(sections, outcomes)
	if *mdPath != "" {
		if err := os.WriteFile(*mdPath, []byte(markdownDocument(body, *in)), 0o644); err != nil {
			return err
		}
	}
	if *svgPath != "" {
		if err := os.WriteFile(*svgPath, []byte(SVG(chartReport(ss), *title)), 0o644); err != nil {
			return err
		}
	}
	_, err = io.WriteString(stdout, body)
	return err
}

// load reads the benchmark output in path, by round-trip time.
func load(path string) ([]SampleSection, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ss, err := ParseSections(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ss, nil
}
