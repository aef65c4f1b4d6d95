// Package proc reads the few facts about processes that the driver needs
// from /proc, so a recorded pid can be checked for identity and liveness
// without being the process's parent.
package proc

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// stat returns the fields of /proc/<pid>/stat after the command name.
func stat(pid int) ([][]byte, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, err
	}
	// The command name is in parentheses and may contain spaces.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return nil, fmt.Errorf("proc: malformed stat for pid %d", pid)
	}
	return bytes.Fields(data[i+1:]), nil
}

// StartTime returns the process start time in clock ticks since boot
// (field 22 of /proc/<pid>/stat): with the pid it identifies a process.
func StartTime(pid int) (uint64, error) {
	f, err := stat(pid)
	if err != nil {
		return 0, err
	}
	return startTime(pid, f)
}

// startTime is field 22 of stat's fields f of pid.
func startTime(pid int, f [][]byte) (uint64, error) {
	// f[0] is field 3 (state), so field 22 is f[19].
	if len(f) < 20 {
		return 0, fmt.Errorf("proc: short stat for pid %d", pid)
	}
	return strconv.ParseUint(string(f[19]), 10, 64)
}

// userHZ is the unit of the CPU times in /proc/<pid>/stat (USER_HZ, 100
// on every Linux architecture Go supports).
const userHZ = 100

// CPUTime returns the user plus system CPU time pid has used (fields 14
// and 15 of /proc/<pid>/stat).
func CPUTime(pid int) (time.Duration, error) {
	f, err := stat(pid)
	if err != nil {
		return 0, err
	}
	if len(f) < 13 {
		return 0, fmt.Errorf("proc: short stat for pid %d", pid)
	}
	var ticks uint64
	for _, field := range f[11:13] { // f[0] is field 3
		n, err := strconv.ParseUint(string(field), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("proc: stat of pid %d: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// Zombie reports whether pid has exited but not been reaped.
func Zombie(pid int) bool {
	f, err := stat(pid)
	return err == nil && len(f) > 0 && string(f[0]) == "Z"
}

// Running reports whether the process pid that started at start (clock
// ticks, see StartTime) still runs: it exists with that start time and
// has not exited (state Z or X). One read of /proc decides, so a process
// reaped while it is asked is never taken for a live one (two reads, one
// for the start time and one for the state, could see it alive and then
// not find it, which read as "not a zombie").
func Running(pid int, start uint64) bool {
	f, err := stat(pid)
	if err != nil {
		return false
	}
	st, err := startTime(pid, f)
	return err == nil && st == start && string(f[0]) != "Z" && string(f[0]) != "X"
}
