package bench

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"

	"github.com/bucket-csi/bucket-csi/internal/localenv"
	"github.com/bucket-csi/bucket-csi/pkg/mountpoint"
	"github.com/bucket-csi/bucket-csi/pkg/proc"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// Volume IDs of the data sets per mode (M: MOUNT, K: MOUNT_CACHED, C: COPY).
func volumeID(mode byte, prefix string) string {
	id := "v1:s3:" + string(mode) + "ps:-:" + bucketName
	if prefix != "" {
		id += "/" + prefix
	}
	return id
}

// ourVolume is a volume of the bench bucket staged by the real driver.
type ourVolume struct {
	drv     *testenv.Driver
	c       testenv.Clients
	id      string
	staging string
	// profile is the volume's `profile` attribute, handed to NodeStage in
	// the volume context as CreateVolume would ("" for none).
	profile string
	// secrets are NodeStage's secrets: the S3 server's keys (newVolume),
	// none for the GCS emulator.
	secrets map[string]string
	// flags are NodeStage's mount flags (e.g. "ro").
	flags []string
}

// newVolume starts a driver (with -bench.args) for a volume of prefix in
// mode; the volume is not staged yet. The driver logs at info, as
// deployed: at debug (the tests' level) its FUSE servers log every read
// of the engine, which took a fifth of a MOUNT server's CPU in a
// sequential read (docs/benchmarks.md).
func newVolume(b *testing.B, f *fixture, mode byte, prefix string) *ourVolume {
	b.Helper()
	drv := testenv.StartDriver(b, f.srv, append([]string{"--log-level", "info"}, strings.Fields(*driverArgs)...)...)
	return &ourVolume{drv: drv, c: drv.Dial(b), id: volumeID(mode, prefix), secrets: f.srv.Secrets()}
}

// stage stages the volume at a new staging path and returns the path.
func (v *ourVolume) stage(b *testing.B) string {
	b.Helper()
	v.staging = filepath.Join(v.drv.TempDir(b), "staging")
	if err := os.MkdirAll(v.staging, 0o750); err != nil {
		b.Fatal(err)
	}
	cap := testenv.MountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER, v.flags...)
	var vctx map[string]string
	if v.profile != "" {
		vctx = map[string]string{volume.KeyProfile: v.profile}
	}
	if _, err := v.c.Node.NodeStageVolume(context.Background(), &csi.NodeStageVolumeRequest{
		VolumeId: v.id, StagingTargetPath: v.staging, VolumeCapability: cap, VolumeContext: vctx, Secrets: v.secrets}); err != nil {
		b.Fatal(err)
	}
	return v.staging
}

// unstage releases the volume, retrying while the driver says uploads
// are still pending.
func (v *ourVolume) unstage(b *testing.B) {
	b.Helper()
	for i := 0; ; i++ {
		_, err := v.c.Node.NodeUnstageVolume(context.Background(), &csi.NodeUnstageVolumeRequest{VolumeId: v.id, StagingTargetPath: v.staging})
		if err == nil {
			return
		}
		if i > 300 {
			b.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pid is the FUSE server of the staged volume.
func (v *ourVolume) pid(b *testing.B) int {
	b.Helper()
	for _, s := range v.drv.Staged(b) {
		if s.VolumeID == v.id && s.Server.Pid > 0 {
			return s.Server.Pid
		}
	}
	b.Fatalf("no FUSE server recorded for %s", v.id)
	return 0
}

// mountOurs stages prefix in mode and returns the directory and the FUSE
// server's pid.
func mountOurs(b *testing.B, f *fixture, mode byte, prefix string) (string, int) {
	b.Helper()
	v := newVolume(b, f, mode, prefix)
	dir := v.stage(b)
	return dir, v.pid(b)
}

// skyPilotFlags are the rclone flags SkyPilot's MOUNT_CACHED mode mounts
// a bucket with (its own engine for the mode this driver's MOUNT_CACHED
// offers); mountOther adds a private --cache-dir.
var skyPilotFlags = []string{"--vfs-cache-mode", "full", "--dir-cache-time", "10s", "--vfs-cache-poll-interval", "10s",
	"--vfs-write-back", "1s", "--vfs-cache-max-size", "10G", "--vfs-fast-fingerprint"}

// mountOther mounts the bench bucket with another client and returns the
// mount point and the client's pid. kind is rclone-mount, rclone-mount2 or
// s3fs at default flags, or rclone-skypilot: rclone mount with
// skyPilotFlags and an empty cache of its own.
func mountOther(b *testing.B, f *fixture, kind string) (string, int) {
	b.Helper()
	dir := filepath.Join(b.TempDir(), "mnt")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	srv := f.srv
	var cmd *exec.Cmd
	switch kind {
	case "rclone-mount", "rclone-mount2":
		cmd = exec.Command(rclone(b), strings.TrimPrefix(kind, "rclone-"), rcloneRemote(f, ""), dir)
		cmd.Env = rcloneEnv(b, f)
	case "rclone-skypilot":
		args := append([]string{"mount", rcloneRemote(f, ""), dir, "--cache-dir", b.TempDir()}, skyPilotFlags...)
		cmd = exec.Command(rclone(b), args...)
		cmd.Env = rcloneEnv(b, f)
	case "s3fs":
		bin, err := exec.LookPath("s3fs")
		if err != nil {
			testenv.Missing(b, "baseline needs s3fs (make bench-tools installs it): %v", err)
		}
		pw := filepath.Join(b.TempDir(), "passwd")
		if err := os.WriteFile(pw, []byte(srv.AccessKey+":"+srv.SecretKey), 0o600); err != nil {
			b.Fatal(err)
		}
		cmd = exec.Command(bin, bucketName, dir, "-f", "-o", "url="+srv.Endpoint, "-o", "use_path_request_style", "-o", "passwd_file="+pw)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + b.TempDir()}
	default:
		b.Fatalf("unknown system %s", kind)
	}
	runMount(b, cmd, dir, kind, 10*time.Second)
	return dir, cmd.Process.Pid
}

// runMount starts cmd, a FUSE client serving dir in the foreground, waits
// up to limit for the mount and unmounts and stops it when the benchmark
// ends; its output is shown if it does not mount.
func runMount(b *testing.B, cmd *exec.Cmd, dir, kind string, limit time.Duration) {
	b.Helper()
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = exec.Command("umount", "-l", dir).Run()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	for deadline := time.Now().Add(limit); ; time.Sleep(20 * time.Millisecond) {
		if ok, _ := mountpoint.Mounted(dir); ok {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s did not mount: %s", kind, strings.TrimSpace(log.String()))
		}
	}
}

// mountSystems are the systems of the read figures. The two with a disk
// cache, bucket-csi-MOUNT_CACHED-cold and rclone-skypilot, are mounted
// afresh before every iteration (onMounts), so each starts cold.
var mountSystems = []string{"bucket-csi-MOUNT", "bucket-csi-MOUNT_CACHED-cold", "rclone-mount", "rclone-mount2", "s3fs", "rclone-skypilot"}

func rclone(b *testing.B) string {
	b.Helper()
	bin, err := localenv.Binary("RCLONE_BIN", "rclone")
	if err != nil {
		testenv.Missing(b, "baseline needs rclone (make bench-tools): %v", err)
	}
	return bin
}

// rcloneRemote is an on-the-fly rclone remote for prefix of the bucket;
// the keys come from the environment (rcloneEnv), never the command line.
func rcloneRemote(f *fixture, prefix string) string {
	return ":s3,provider=Other,env_auth=true,endpoint='" + f.srv.Endpoint + "':" + bucketName + "/" + prefix
}

func rcloneEnv(b *testing.B, f *fixture) []string {
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=" + b.TempDir(), "AWS_ACCESS_KEY_ID=" + f.srv.AccessKey, "AWS_SECRET_ACCESS_KEY=" + f.srv.SecretKey}
}

// evict drops path's pages from the page cache, so the next read goes
// through the FUSE server (or to the disk for local files).
func evict(b *testing.B, path string) {
	b.Helper()
	fd, err := unix.Open(path, unix.O_RDONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED); err != nil {
		b.Fatal(err)
	}
}

// dropCaches drops the whole page cache (then the server reads its disk).
func dropCaches(b *testing.B) {
	unix.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0o200); err != nil {
		b.Fatal(err)
	}
}

// warmServer reads the server's copy of the large object, so cold client
// reads measure the client, not the server's disk.
func warmServer(b *testing.B, f *fixture) {
	b.Helper()
	data, err := os.Open(f.largePath)
	if err != nil {
		b.Fatal(err)
	}
	defer data.Close()
	buf := make([]byte, 4<<20)
	for {
		if _, err := data.Read(buf); err != nil {
			return
		}
	}
}

// procCPU is the user plus system CPU time of pid in seconds.
func procCPU(b *testing.B, pid int) float64 {
	b.Helper()
	d, err := proc.CPUTime(pid)
	if err != nil {
		b.Fatal(err)
	}
	return d.Seconds()
}

// procMemMiB is a /proc/<pid>/status memory field (VmHWM, VmRSS) in MiB.
func procMemMiB(b *testing.B, pid int, field string) float64 {
	b.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb / 1024
		}
	}
	b.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
