// Command cluster starts and stops a single-node Kubernetes for `make e2e`
// on this machine: etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler, containerd and kubelet, plus a versitygw S3 server, all
// inside a network namespace it creates (a veth pair with both ends inside
// holds the node's address; nothing can leave it, and nothing is ever aimed
// at the host's own address). Components run with nsenter --net only, so
// mounts are shared with the host as a real node's are.
//
//	cluster up      start everything, import images, helm install bucket-csi
//	cluster down    stop everything, unmount, delete the namespace
//	cluster exec -- CMD...   run CMD in the namespace with KUBECONFIG set
//	cluster restart NAME     restart a component (kubelet, versitygw, ...)
//	cluster stop NAME        stop a component; cluster start NAME starts it again
//
// State, logs and kubeconfig live in $E2E_DIR (default /var/lib/bucket-csi-e2e).
package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// The cluster's fixed addresses, all inside its own network namespace.
const (
	netnsName   = "bucket-csi-e2e"
	nodeIP      = "10.213.0.2"
	nodeCIDR    = nodeIP + "/24"
	serviceCIDR = "10.96.0.0/24"
	serviceIP   = "10.96.0.1"
	podCIDR     = "10.244.0.0/24"
	nodeName    = "e2e-node"
	s3Port      = "7070"
	kubeletDir  = "/var/lib/kubelet"
)

// S3 credentials of the test server, reachable only inside the namespace.
const (
	s3AccessKey = "e2eaccess"
	s3SecretKey = "e2esecret-not-a-real-key"
)

type cluster struct {
	dir  string // state, logs, pki, data
	repo string // repository root (bin/, charts/)
	env  []string
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: cluster up|down|exec -- CMD...")
		os.Exit(2)
	}
	c, err := newCluster()
	if err == nil {
		switch os.Args[1] {
		case "up":
			err = c.up()
		case "down":
			err = c.down()
		case "exec":
			err = c.exec(os.Args[2:])
		case "restart", "start":
			// start is restart of a stopped component: both run it again
			// with the command line it was first started with.
			if len(os.Args) != 3 {
				err = fmt.Errorf("usage: cluster %s COMPONENT", os.Args[1])
			} else {
				err = c.restartDaemon(os.Args[2])
			}
		case "stop":
			if len(os.Args) != 3 {
				err = fmt.Errorf("usage: cluster stop COMPONENT")
			} else {
				c.stopDaemon(os.Args[2], 30*time.Second)
			}
		default:
			err = fmt.Errorf("unknown command %q", os.Args[1])
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

func newCluster() (*cluster, error) {
	dir := os.Getenv("E2E_DIR")
	if dir == "" {
		dir = "/var/lib/bucket-csi-e2e"
	}
	repo, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(repo, "charts", "bucket-csi")); err != nil {
		return nil, fmt.Errorf("run from the repository root: %w", err)
	}
	return &cluster{dir: dir, repo: repo}, nil
}

func (c *cluster) netnsPath() string { return "/run/netns/" + netnsName }
func (c *cluster) bin(name string) string {
	return filepath.Join(c.repo, "bin", "k8s", name)
}
func (c *cluster) path(p ...string) string { return filepath.Join(append([]string{c.dir}, p...)...) }

// Kubeconfig is the admin kubeconfig; it works inside the namespace.
func (c *cluster) kubeconfig() string { return c.path("pki", "admin.kubeconfig") }

// exec runs a command inside the namespace with KUBECONFIG, the S3 test
// server's address and credentials in its environment.
func (c *cluster) exec(argv []string) error {
	if len(argv) > 0 && argv[0] == "--" {
		argv = argv[1:]
	}
	if len(argv) == 0 {
		return fmt.Errorf("exec: no command")
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return err
	}
	env := append(withoutVars(os.Environ(), "KUBECONFIG", "PATH"), "KUBECONFIG="+c.kubeconfig(), "E2E_S3_ENDPOINT=http://"+net.JoinHostPort(nodeIP, s3Port),
		"E2E_S3_ACCESS_KEY="+s3AccessKey, "E2E_S3_SECRET_KEY="+s3SecretKey, "E2E_DIR="+c.dir, fmt.Sprintf("E2E_INLINE_PER_NAMESPACE=%d", inlinePerNamespace),
		"E2E_CLUSTER="+filepath.Join(c.repo, "bin", "cluster"), "E2E_CHART="+filepath.Join(c.repo, "charts", "bucket-csi"),
		"PATH="+filepath.Join(c.repo, "bin", "k8s")+":"+filepath.Join(c.repo, "bin")+":"+os.Getenv("PATH"))
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return err
	}
	return syscall.Exec(nsenter, append([]string{"nsenter", "--net=" + c.netnsPath(), "--", path}, argv[1:]...), env)
}

// withoutVars drops the named variables from env: a program reading its
// environment takes the first of two entries with one name, so the ones
// exec sets must be the only ones.
func withoutVars(env []string, names ...string) []string {
	out := env[:0:0]
	for _, kv := range env {
		keep := true
		for _, n := range names {
			keep = keep && !strings.HasPrefix(kv, n+"=")
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}
