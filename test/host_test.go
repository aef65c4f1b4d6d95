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

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bucket-csi/bucket-csi/internal/localenv"
	"github.com/bucket-csi/bucket-csi/pkg/mountpoint"
	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// startMounterHost runs `bucket-csi mounter-host` on sock, serving paths
// below allowed.
func startMounterHost(t *testing.T, sock, allowed string) *exec.Cmd {
	t.Helper()
	bin, err := localenv.Binary("BUCKET_CSI_BIN", "bucket-csi")
	if err != nil {
		testenv.Missing(t, "%v", err)
	}
	cmd := exec.Command(bin, "mounter-host", "--socket", sock, "--allowed-dirs", allowed)
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
			return cmd
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
	sock := filepath.Join(t.TempDir(), "mounter.sock")
	s3, drv, c := startAll(t, "--mounter-socket", sock)
	host := startMounterHost(t, sock, drv.Dir)
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

// TestMounterHostPaths: the mounter host serves only paths below its
// --allowed-dirs. A staging path outside them, directly or through a
// symlink, is refused with InvalidArgument (final, not retried as
// Unavailable) saying what is allowed; a path inside works.
func TestMounterHostPaths(t *testing.T) {
	testenv.RequireFUSE(t)
	sock := filepath.Join(t.TempDir(), "mounter.sock")
	s3, drv, c := startAll(t, "--mounter-socket", sock)
	startMounterHost(t, sock, drv.Dir)
	v, err := c.Controller.CreateVolume(t.Context(), createReq("pvc-host-paths", nil, s3.Secrets()))
	if err != nil {
		t.Fatal(err)
	}
	id := v.GetVolume().GetVolumeId()
	outside := t.TempDir()
	link := filepath.Join(drv.TempDir(t), "link")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	for name, staging := range map[string]string{
		"outside":          filepath.Join(outside, "staging"),
		"symlink escaping": filepath.Join(link, "staging"),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := c.Node.NodeStageVolume(t.Context(), &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging,
				VolumeCapability: testenv.MountCap(rwx), Secrets: s3.Secrets()})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "--allowed-dirs") {
				t.Fatalf("got %v, want InvalidArgument naming --allowed-dirs", err)
			}
			if m, _ := mountpoint.Mounted(staging); m {
				t.Fatalf("%s was mounted", staging)
			}
		})
	}
	staging, target := podPaths(t, drv)
	publish(t, c, id, staging, target, s3.Secrets(), false)
	unpublish(t, c, id, staging, target)
}
