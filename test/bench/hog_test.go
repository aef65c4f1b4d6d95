package bench

import (
	"fmt"
	"os"
	"os/exec"
)

// hogEnv set in the environment makes the bench binary a CPU hog: it
// spins until killed (see -bench.hog and TestMain).
const hogEnv = "BENCH_CPU_HOG"

// startHog starts this binary as a CPU hog on the CPUs the bench may use
// (it inherits the bench's affinity: CPU 1 under make bench, where the
// FUSE servers, the baselines and the readers run), so every figure is
// taken with another process busy beside it. stop kills it.
func startHog() (stop func(), err error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), hogEnv+"=1")
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the CPU hog: %w", err)
	}
	return func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }, nil
}

// spin is the hog's body: one thread busy for good.
func spin() {
	for n := uint64(0); ; n++ {
		_ = n
	}
}
