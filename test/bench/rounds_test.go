package bench

import (
	"flag"
	"testing"
)

var rounds = flag.Int("bench.rounds", 1, "run every figure's systems this many times, one round after another, the order turned by one system each round (not with two systems; make bench: BENCH_COUNT)")

// figure is one benchmark's systems, run in rounds (-bench.rounds): each
// round runs every system once, and round r (from 0) starts at system
// r mod n of n and wraps around, so that no system's runs sit back to back and a
// passing state of the machine (a spell of seconds to minutes,
// docs/benchmarks.md) falls on one round of several systems rather than
// on every round of one. A figure of two systems is not turned (A B A B,
// where turning would give A B B A), so its second system always runs
// after the first. Go names a system's second run
// "<system>#01", its third "<system>#02"; hack/benchreport files them
// under <system>. (Go's -test.count would repeat each system's runs in a
// row.)
type figure struct {
	b       *testing.B
	systems []system
}

// system is one sub-benchmark of a figure.
type system struct {
	name string
	run  func(b *testing.B)
}

// newFigure starts collecting the systems of the benchmark b.
func newFigure(b *testing.B) *figure { return &figure{b: b} }

// add adds a system; it runs in run, not now, so whatever it needs from
// the benchmark's set-up must be ready before run is called.
func (fg *figure) add(name string, run func(b *testing.B)) {
	fg.systems = append(fg.systems, system{name, run})
}

// run runs the systems in -bench.rounds rounds, the order turned by one
// each round (with two systems, not turned).
func (fg *figure) run() {
	n := len(fg.systems)
	turn := 1
	if n == 2 {
		turn = 0 // the last of a round would be the first of the next
	}
	if err := settleMemory(); err != nil {
		fg.b.Fatal(err)
	}
	for r := range max(1, *rounds) {
		for i := range n {
			s := fg.systems[(r*turn+i)%n]
			fg.b.Run(s.name, s.run)
		}
	}
}
