package test

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bucket-csi/bucket-csi/internal/localenv"
	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// startMounterHost runs `bucket-csi mounter-host` on a socket in dir.
func startMounterHost(t *testing.T, dir string) (*exec.Cmd, string) {
	t.Helper()
	bin, err := localenv.Binary("BUCKET_CSI_BIN", "bucket-csi")
	if err != nil {
		testenv.Missing(t, "%v", err)
	}
	sock := filepath.Join(dir, "mounter.sock")
	cmd := exec.Command(bin, "mounter-host", "--socket", sock)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for i := 0; ; i++ {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return cmd, sock
		}
		if i > 500 {
			t.Fatalf("mounter host did not listen: %s", log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func parentPid(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// TestMounterHost: with --mounter-socket the FUSE servers are started by
// the mounter host (their parent), so they live outside the node plugin's
// process tree and container; killing and restarting the plugin leaves the
// mount serving, and the restarted plugin unstages it.
func TestMounterHost(t *testing.T) {
	testenv.RequireFUSE(t)
	host, sock := startMounterHost(t, t.TempDir())
	s3, drv, c := startAll(t, "--mounter-socket", sock)
	v, err := c.Controller.CreateVolume(t.Context(), createReq("pvc-host", map[string]string{"mode": "MOUNT_CACHED"}, s3.Secrets()))
	if err != nil {
		t.Fatal(err)
	}
	id := v.GetVolume().GetVolumeId()
	staging, target := podPaths(t, drv)
	publish(t, c, id, staging, target, s3.Secrets(), false)
	server := drv.Staged(t)[0].Server
	if ppid := parentPid(t, server.Pid); ppid != host.Process.Pid {
		t.Fatalf("FUSE server's parent is %d, want the mounter host %d", ppid, host.Process.Pid)
	}
	drv.Kill(syscall.SIGKILL)
	if err := os.WriteFile(filepath.Join(target, "while-plugin-dead.txt"), []byte("ok"), 0o644); err != nil {
		t.Fatalf("writing while the plugin is dead: %v", err)
	}
	if err := drv.Restart(); err != nil {
		t.Fatal(err)
	}
	c = drv.Dial(t)
	unpublish(t, c, id, staging, target)
	if got, err := s3.ReadObject(t, v.GetVolume().GetVolumeContext()["bucket"], "while-plugin-dead.txt"); err != nil || string(got) != "ok" {
		t.Fatalf("file written while the plugin was dead: %q %v", got, err)
	}
	if !testenv.WaitGone(server) {
		t.Fatal("FUSE server still running after unstage")
	}
}
