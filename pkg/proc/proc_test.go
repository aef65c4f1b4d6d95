package proc

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

func TestCPUTimeMatchesRusage(t *testing.T) {
	// Burn CPU until the kernel's own account shows 200 ms.
	var ru syscall.Rusage
	for x := 0; ; x++ {
		if x%1_000_000 == 0 {
			if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
				t.Fatal(err)
			}
			if time.Duration(ru.Utime.Nano()+ru.Stime.Nano()) >= 200*time.Millisecond {
				break
			}
		}
	}
	got, err := CPUTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// /proc counts in ticks of 10 ms; allow a few either way.
	want := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	if got < want-50*time.Millisecond || got > want+time.Second {
		t.Fatalf("CPUTime %v, rusage %v", got, want)
	}
	if _, err := CPUTime(-1); err == nil {
		t.Fatal("no error for a pid that cannot exist")
	}
}

func TestStartTimeAndZombie(t *testing.T) {
	st, err := StartTime(os.Getpid())
	if err != nil || st == 0 {
		t.Fatalf("StartTime of this process: %d, %v", st, err)
	}
	if Zombie(os.Getpid()) {
		t.Fatal("this process is reported a zombie")
	}
}

// TestRunning: this process runs with its own start time, not with
// another; a killed and reaped child does not run, and neither does its
// zombie before it is reaped.
func TestRunning(t *testing.T) {
	st, err := StartTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !Running(os.Getpid(), st) || Running(os.Getpid(), st+1) {
		t.Fatalf("Running(self, %d) / (self, %d) wrong", st, st+1)
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	cst, err := StartTime(pid)
	if err != nil || !Running(pid, cst) {
		t.Fatalf("a started child: %d %v, running %v", cst, err, Running(pid, cst))
	}
	_ = cmd.Process.Kill()
	for deadline := time.Now().Add(10 * time.Second); !Zombie(pid); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the killed child did not become a zombie")
		}
	}
	if Running(pid, cst) {
		t.Fatal("a zombie is reported running")
	}
	_ = cmd.Wait()
	if Running(pid, cst) {
		t.Fatal("a reaped child is reported running")
	}
}
