package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// startDaemon starts a component inside the cluster's network namespace
// (nsenter --net: the mount namespace stays the host's, so mounts are seen
// by every component), in its own session so it outlives `up`, logging to
// <dir>/logs/<name>.log; its PID goes to <dir>/pids/<name>.
func (c *cluster) startDaemon(name string, argv ...string) error {
	logf, err := os.OpenFile(filepath.Join(c.dir, "logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	saved := strings.Join(append(append([]string{}, c.env...), append([]string{"--"}, argv...)...), "\x00")
	if err := os.WriteFile(filepath.Join(c.dir, "pids", name+".argv"), []byte(saved), 0o600); err != nil {
		return err
	}
	cmd := exec.Command("nsenter", append([]string{"--net=" + c.netnsPath(), "--"}, argv...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), c.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	return os.WriteFile(filepath.Join(c.dir, "pids", name), []byte(strconv.Itoa(pid)), 0o644)
}

// stopDaemon sends SIGTERM to the recorded process of name, then SIGKILL
// after grace, and waits for it to be gone.
func (c *cluster) stopDaemon(name string, grace time.Duration) {
	pidFile := filepath.Join(c.dir, "pids", name)
	data, err := os.ReadFile(pidFile)
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 {
		return
	}
	// nsenter execs the component, so the PID is the component's own.
	if !alive(pid) {
		_ = os.Remove(pidFile)
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for alive(pid) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if alive(pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for i := 0; alive(pid) && i < 50; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}
	_ = os.Remove(pidFile)
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(stat))
	return len(f) < 3 || f[2] != "Z"
}

// run runs a command to completion, failing with its output.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// inNetns runs a command inside the cluster's network namespace.
func (c *cluster) inNetns(name string, args ...string) error {
	return run("nsenter", append([]string{"--net=" + c.netnsPath(), "--", name}, args...)...)
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(what string, timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not ready after %s: %w", what, timeout, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// waitDaemon waits for cond like waitFor, but gives up at once, with the
// end of its log, when the daemon name has exited.
func (c *cluster) waitDaemon(name string, timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if !c.running(name) {
			log, _ := os.ReadFile(filepath.Join(c.dir, "logs", name+".log"))
			if len(log) > 2000 {
				log = log[len(log)-2000:]
			}
			return fmt.Errorf("%s exited; end of its log:\n%s", name, log)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not ready after %s: %w", name, timeout, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// restartDaemon stops name and starts it again with the command line and
// environment it was started with (scenarios restart kubelet this way).
func (c *cluster) restartDaemon(name string) error {
	data, err := os.ReadFile(filepath.Join(c.dir, "pids", name+".argv"))
	if err != nil {
		return fmt.Errorf("%s was not started by this cluster: %w", name, err)
	}
	fields := strings.Split(string(data), "\x00")
	var env, argv []string
	for i, f := range fields {
		if f == "--" {
			env, argv = fields[:i], fields[i+1:]
			break
		}
	}
	c.stopDaemon(name, 30*time.Second)
	c.env = env
	defer func() { c.env = nil }()
	return c.startDaemon(name, argv...)
}
