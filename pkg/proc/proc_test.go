package proc

import (
	"os"
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
