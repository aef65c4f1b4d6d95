package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/bucket-csi/bucket-csi/internal/ocimage"
)

// Images the cluster imports; no registry is reachable, so each is built
// here and carries the name the chart, kubelet or the scenarios use.
const (
	pauseImage       = "registry.k8s.io/pause:3.10"
	busyboxImage     = "registry.k8s.io/e2e-test-images/busybox:1.37.0-1"
	agnhostImage     = "registry.k8s.io/e2e-test-images/agnhost:2.56"
	dnsutilsImage    = "registry.k8s.io/e2e-test-images/jessie-dnsutils:1.7"
	nginxImage       = "registry.k8s.io/e2e-test-images/nginx:1.14-4"
	suitePauseImage  = "registry.k8s.io/pause:3.10.1"                       // the storage e2e suite's
	provisionerImage = "registry.k8s.io/sig-storage/csi-provisioner:v6.3.0" // the chart's default
	driverRepo       = "ghcr.io/bucket-csi/bucket-csi"
	driverTag        = "e2e"
)

// images builds the pause, busybox and csi-provisioner images and imports
// them with the driver's (bin/bucket-csi-image.tar from make image).
func (c *cluster) images() error {
	pause := c.path("images", "pause")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", pause, "./hack/cluster/pause")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building pause: %w\n%s", err, out)
	}
	single := func(tag, bin, dst string) error {
		t := ocimage.Tree{}
		t.Add(ocimage.Entry{Path: dst, Src: bin, Mode: 0o755})
		t.Add(ocimage.Entry{Path: "/tmp", Dir: true, Mode: 0o777 | os.ModeSticky})
		img, err := t.Image(ocimage.Config{Entrypoint: []string{dst}})
		if err != nil {
			return err
		}
		return ocimage.Write(c.path("images", filepath.Base(dst)+".tar"), tag, img)
	}
	if err := single(pauseImage, pause, "/pause"); err != nil {
		return err
	}
	if err := os.Rename(c.path("images", "pause.tar"), c.path("images", "pause-cluster.tar")); err != nil {
		return err
	}
	if err := single(suitePauseImage, pause, "/pause"); err != nil {
		return err
	}
	if err := single(provisionerImage, c.bin("csi-provisioner"), "/csi-provisioner"); err != nil {
		return err
	}
	if err := c.busybox(); err != nil {
		return err
	}
	tars := []string{c.path("images", "pause-cluster.tar"), c.path("images", "pause.tar"), c.path("images", "csi-provisioner.tar"),
		c.path("images", "busybox.tar"), c.path("images", "dnsutils.tar"), c.path("images", "nginx.tar"), filepath.Join(c.repo, "bin", "bucket-csi-image.tar")}
	if _, err := os.Stat(c.path("images", "agnhost.tar")); err == nil {
		tars = append(tars, c.path("images", "agnhost.tar"))
	}
	for _, tar := range tars {
		if err := run("ctr", "--address", c.containerdSock(), "-n", "k8s.io", "images", "import", tar); err != nil {
			return err
		}
	}
	return nil
}

// busybox is Debian's busybox-static with a link per applet and a /tmp;
// agnhost (the storage e2e suite's test image, built from the pinned
// k8s.io/kubernetes into bin/k8s by make conformance) is the same tree with
// /agnhost as its entrypoint, and is imported only when it was built.
func (c *cluster) busybox() error {
	t, err := busyboxTree()
	if err != nil {
		return err
	}
	img, err := t.Image(ocimage.Config{Cmd: []string{"sh"}})
	if err != nil {
		return err
	}
	if err := ocimage.Write(c.path("images", "busybox.tar"), busyboxImage, img); err != nil {
		return err
	}
	// The storage e2e suite's multiVolume pods only run a shell loop in
	// jessie-dnsutils, and its exec test a shell script in nginx: busybox
	// does both.
	if err := ocimage.Write(c.path("images", "dnsutils.tar"), dnsutilsImage, img); err != nil {
		return err
	}
	if err := ocimage.Write(c.path("images", "nginx.tar"), nginxImage, img); err != nil {
		return err
	}
	agnhost := c.bin("agnhost")
	if _, err := os.Stat(agnhost); err != nil {
		return nil
	}
	t.Add(ocimage.Entry{Path: "/agnhost", Src: agnhost, Mode: 0o755})
	if img, err = t.Image(ocimage.Config{Entrypoint: []string{"/agnhost"}}); err != nil {
		return err
	}
	return ocimage.Write(c.path("images", "agnhost.tar"), agnhostImage, img)
}

func busyboxTree() (ocimage.Tree, error) {
	const bb = "/bin/busybox"
	out, err := exec.Command(bb, "--list-full").Output()
	if err != nil {
		return ocimage.Tree{}, fmt.Errorf("busybox-static (Debian) is needed: %w", err)
	}
	t := ocimage.Tree{}
	t.Add(ocimage.Entry{Path: bb, Src: bb, Mode: 0o755})
	t.Add(ocimage.Entry{Path: "/tmp", Dir: true, Mode: 0o777 | os.ModeSticky})
	t.Add(ocimage.Entry{Path: "/etc/passwd", Data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")})
	t.Add(ocimage.Entry{Path: "/etc/group", Data: []byte("root:x:0:\nnogroup:x:65534:\n")})
	for _, applet := range strings.Fields(string(out)) {
		if p := "/" + applet; p != bb {
			t.Add(ocimage.Entry{Path: p, Link: bb})
		}
	}
	return t, nil
}
