package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// down stops the cluster and leaves nothing behind: workload pods are
// deleted first (kubelet unmounts their volumes through the driver), then
// bucket-csi is uninstalled, then every component stops; what is still
// mounted below the cluster's directories is unmounted, the containers'
// network namespaces and the cluster's own are deleted, the state removed.
// It is safe to run on a half-started or already stopped cluster.
func (c *cluster) down() error {
	t0 := time.Now()
	if c.running("kube-apiserver") && c.running("kubelet") {
		out, _ := c.kubectlOut("get", "ns", "-l", "bucket-csi-e2e=scenario", "-o", "name")
		if names := strings.Fields(out); len(names) > 0 {
			_ = c.kubectl(append([]string{"delete", "--wait", "--timeout=150s"}, names...)...)
		}
		helm := filepath.Join(c.repo, "bin", "helm")
		cmd := exec.Command("nsenter", "--net="+c.netnsPath(), "--", helm, "uninstall", "bucket-csi", "--namespace", "bucket-csi",
			"--kubeconfig", c.kubeconfig(), "--wait", "--timeout", "90s")
		cmd.Env = append(os.Environ(), "HOME="+c.dir)
		_ = cmd.Run()
		_ = waitFor("pods gone", 60*time.Second, func() error {
			out, err := c.kubectlOut("get", "pods", "-A", "-o", "name")
			if err == nil && strings.TrimSpace(out) != "" {
				err = fmt.Errorf("left: %s", strings.Join(strings.Fields(out), " "))
			}
			return err
		})
	}
	c.stopDaemon("kubelet", 10*time.Second)
	c.killContainers()
	c.stopDaemon("containerd", 10*time.Second)
	c.killShims()
	for _, d := range []string{"kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd", "versitygw"} {
		c.stopDaemon(d, 10*time.Second)
	}
	unmountBelow(kubeletDir)
	unmountBelow("/var/lib/bucket-csi")
	unmountBelow(c.dir)
	for _, d := range []string{kubeletDir, "/var/lib/bucket-csi"} {
		for syscall.Unmount(d, syscall.MNT_DETACH) == nil {
		}
	}
	if netns, _ := filepath.Glob("/run/netns/cni-*"); len(netns) > 0 {
		for _, n := range netns {
			_ = run("ip", "netns", "delete", filepath.Base(n))
		}
	}
	if _, err := os.Stat(c.netnsPath()); err == nil {
		if err := run("ip", "netns", "delete", netnsName); err != nil {
			return err
		}
	}
	if left := mountsBelow(kubeletDir, "/var/lib/bucket-csi", c.dir); len(left) > 0 {
		return fmt.Errorf("still mounted: %v", left)
	}
	for _, d := range []string{kubeletDir, "/var/lib/bucket-csi", "/run/bucket-csi", c.dir} {
		if err := os.RemoveAll(d); err != nil {
			return err
		}
	}
	fmt.Printf("cluster: down in %.1fs\n", time.Since(t0).Seconds())
	return nil
}

func (c *cluster) running(name string) bool {
	data, err := os.ReadFile(c.path("pids", name))
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	return err == nil && alive(pid)
}

// killContainers stops whatever containers kubelet left running.
func (c *cluster) killContainers() {
	if !c.running("containerd") {
		return
	}
	ctr := func(args ...string) string {
		out, _ := exec.Command("ctr", append([]string{"--address", c.containerdSock(), "-n", "k8s.io"}, args...)...).Output()
		return string(out)
	}
	for _, id := range strings.Fields(ctr("tasks", "ls", "-q")) {
		ctr("tasks", "kill", "-s", "SIGKILL", id)
	}
	time.Sleep(time.Second)
	for _, id := range strings.Fields(ctr("tasks", "ls", "-q")) {
		ctr("tasks", "delete", "-f", id)
	}
}

// killShims kills the containerd-shim processes of this cluster's
// containerd (they outlive it by design), found by its socket address on
// their command line.
func (c *cluster) killShims() {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		argv := strings.Split(string(data), "\x00")
		if len(argv) == 0 || !strings.Contains(filepath.Base(argv[0]), "containerd-shim") || !strings.Contains(string(data), c.containerdSock()) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// mountsBelow lists mount points at or below any of dirs.
func mountsBelow(dirs ...string) []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := strings.ReplaceAll(f[4], `\040`, " ")
		for _, d := range dirs {
			if strings.HasPrefix(mp, d+"/") {
				out = append(out, mp)
			}
		}
	}
	return out
}

// unmountBelow lazily unmounts every mount point strictly below dir,
// deepest first.
func unmountBelow(dir string) {
	mps := mountsBelow(dir)
	sort.Slice(mps, func(i, j int) bool { return len(mps[i]) > len(mps[j]) })
	for _, mp := range mps {
		_ = syscall.Unmount(mp, syscall.MNT_DETACH)
	}
}
