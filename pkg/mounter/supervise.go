// Package mounter starts and supervises the FUSE server processes of MOUNT
// and MOUNT_CACHED volumes from the node plugin, and asks them over their
// control sockets (the server itself is pkg/fuseserver; what passes
// between the two is pkg/fuseproto).
//
// The node plugin (Start) runs the bucket-csi-mounter binary, installed
// next to its own, in a new session (or asks a mounter host to, see
// host.go), so the FUSE server is not killed with the plugin: a plugin
// restart or upgrade leaves every mount serving. The volume's Config,
// credentials included, travels over the child's stdin and never appears
// on its command line or in its environment; the only files holding it
// are 0600 in the volume's 0700 state directory (the saved config that
// lets a dead server be restarted, and credential files a backend must
// read). Errors cross both process boundaries (the server's status line,
// the host's replies) with their pkg/fault kind.
package mounter

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/fuseproto"
	"github.com/bucket-csi/bucket-csi/pkg/mountpoint"
	"github.com/bucket-csi/bucket-csi/pkg/proc"
	"github.com/bucket-csi/bucket-csi/pkg/redact"
)

// Supervisor starts and stops FUSE server processes.
type Supervisor struct {
	// Exe is the FUSE server binary; "" means MounterBinary next to the
	// running executable.
	Exe string
	// Env is the environment given to every FUSE server: only variables that
	// carry no secret (see store.Backend.Env).
	Env []string
	// Host, if set, is the socket of a mounter host (ServeHost) that starts
	// the servers instead of this process.
	Host string
}

// MounterBinary is the file name of the FUSE server binary, installed next
// to the driver binary.
const MounterBinary = "bucket-csi-mounter"

// exe returns the FUSE server binary to start.
func (s *Supervisor) exe() (string, error) {
	if s.Exe != "" {
		return s.Exe, nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("finding the driver binary: %w", err)
	}
	exe := filepath.Join(filepath.Dir(self), MounterBinary)
	if _, err := os.Stat(exe); err != nil {
		return "", fmt.Errorf("the FUSE server binary %s must be installed next to %s: %w", MounterBinary, self, err)
	}
	return exe, nil
}

// Started identifies a running FUSE server process.
type Started struct {
	Pid       int    `json:"pid"`
	StartTime uint64 `json:"startTime"` // from /proc/<pid>/stat, guards against pid reuse
}

// Start launches a FUSE server for cfg with its log appended to logPath
// (created 0600) and returns once the mount is live. If ctx ends first, or
// the server reports an error, the process is killed and the error returned:
// the server's report keeps its fault kind (fuseproto.ParseStatusLine: a
// config it refuses is fault.Invalid), a deadline is fault.Unavailable so
// the CO retries. Through a mounter host (Host) the kind crosses its
// socket too (hostReply.Kind).
func (s *Supervisor) Start(ctx context.Context, cfg *fuseproto.Config, logPath string) (Started, error) {
	if err := cfg.Validate(); err != nil {
		return Started{}, fmt.Errorf("%w: %v", fault.Invalid, err)
	}
	if s.Host != "" {
		return s.startRemote(ctx, cfg, logPath)
	}
	payload, err := json.Marshal(cfg)
	if err != nil {
		return Started{}, err
	}
	// Readable too: the server keeps its log under a size cap by cutting
	// it to its last lines (fuseserver.ServeMain, logging.Capped).
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return Started{}, fmt.Errorf("opening mounter log: %w", err)
	}
	defer logFile.Close()
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return Started{}, err
	}
	defer statusR.Close()
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		statusW.Close()
		return Started{}, err
	}
	exe, err := s.exe()
	if err != nil {
		stdinR.Close()
		stdinW.Close()
		statusW.Close()
		return Started{}, err
	}
	cmd := exec.Command(exe)
	cmd.Stdin = stdinR
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.ExtraFiles = []*os.File{statusW} // fd 3
	cmd.Env = s.Env
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	// A new session: the server survives the plugin and its process group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	stdinR.Close()
	statusW.Close()
	if err != nil {
		stdinW.Close()
		return Started{}, fmt.Errorf("starting the FUSE server: %w", err)
	}
	// Reap the child whenever it exits, so no zombie is left behind while
	// this plugin process lives.
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	_, werr := stdinW.Write(payload)
	stdinW.Close()

	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(statusR).ReadString('\n')
		line <- strings.TrimSpace(l)
	}()
	fail := func(err error) (Started, error) {
		_ = cmd.Process.Kill()
		<-exited
		_ = unix.Unmount(cfg.MountPoint, unix.MNT_DETACH)
		return Started{}, err
	}
	if werr != nil {
		return fail(fmt.Errorf("%w: sending the FUSE server its config: %v", fault.Unavailable, werr))
	}
	select {
	case l := <-line:
		// The server masks its secrets itself; masking again here also
		// covers a server binary older than that.
		if err := fuseproto.ParseStatusLine(redact.New(cfg.Redact...).String(l)); err != nil {
			if l == "" {
				err = fmt.Errorf("%w; see %s", err, logPath)
			}
			return fail(err)
		}
	case <-ctx.Done():
		return fail(fmt.Errorf("%w: the FUSE server did not mount in time: %v", fault.Unavailable, ctx.Err()))
	}
	st, err := proc.StartTime(cmd.Process.Pid)
	if err != nil {
		return fail(fmt.Errorf("%w: FUSE server vanished: %v", fault.Unavailable, err))
	}
	return Started{Pid: cmd.Process.Pid, StartTime: st}, nil
}

// Alive reports whether the process p is still the FUSE server that was
// started (not exited, not a zombie, pid not reused).
func (p Started) Alive() bool {
	if p.Pid <= 0 {
		return false
	}
	return proc.Running(p.Pid, p.StartTime)
}

// Stop unmounts mountPoint and waits up to grace for the server p to exit,
// then kills it, all within ctx's deadline (less a margin to answer).
// killed reports that the server had to be killed (it may have exited
// with work left in its cache). An unmount refused because the mount is
// busy is fault.Pending: files are still open, retry later.
func Stop(ctx context.Context, p Started, mountPoint string, grace time.Duration) (killed bool, err error) {
	if err := mountpoint.Unmount(mountPoint); err != nil {
		return false, err
	}
	deadline := time.Now().Add(grace)
	if d, ok := ctx.Deadline(); ok && d.Add(-2*time.Second).Before(deadline) {
		deadline = d.Add(-2 * time.Second)
	}
	for p.Alive() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !p.Alive() {
		return false, nil
	}
	_ = syscall.Kill(p.Pid, syscall.SIGTERM)
	for i := 0; i < 25 && p.Alive(); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if p.Alive() {
		// A stopped or hung server ignores SIGTERM; SIGKILL always works.
		_ = syscall.Kill(p.Pid, syscall.SIGKILL)
	}
	return true, nil
}
