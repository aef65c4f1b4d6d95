package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// up starts the cluster; on failure it leaves everything for `down` (which
// `make e2e` always runs) and for a person to read the logs.
func (c *cluster) up() error {
	t0 := time.Now()
	for _, d := range []string{"logs", "pids", "pki", "etcd", "containerd/root", "containerd/state", "cni/net.d", "s3", "images"} {
		if err := os.MkdirAll(c.path(d), 0o700); err != nil {
			return err
		}
	}
	steps := []struct {
		name string
		fn   func() error
	}{
		{"network namespace", c.network},
		{"certificates", func() error { return writePKI(c.path("pki"), net.ParseIP(nodeIP), nodeName) }},
		{"etcd", c.etcd},
		{"kube-apiserver", c.apiserver},
		{"controller-manager and scheduler", c.controllers},
		{"containerd", c.containerd},
		{"images", c.images},
		{"kubelet", c.kubelet},
		{"S3 server", c.s3},
		{"bucket-csi (helm install)", c.install},
	}
	for _, s := range steps {
		t := time.Now()
		if err := s.fn(); err != nil {
			return fmt.Errorf("%s: %w (logs in %s)", s.name, err, c.path("logs"))
		}
		fmt.Printf("cluster: %-34s %5.1fs\n", s.name, time.Since(t).Seconds())
	}
	fmt.Printf("cluster: up in %.1fs; kubeconfig %s (use: go run ./hack/cluster exec -- kubectl get pods -A)\n", time.Since(t0).Seconds(), c.kubeconfig())
	return nil
}

// network creates the namespace and a veth pair with both ends inside; the
// node's address is on one end. There is no route out.
func (c *cluster) network() error {
	if _, err := os.Stat(c.netnsPath()); err == nil {
		return fmt.Errorf("network namespace %s exists: run `cluster down` first", netnsName)
	}
	if err := run("ip", "netns", "add", netnsName); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"link", "add", "e2e0", "type", "veth", "peer", "name", "e2e1"},
		{"addr", "add", nodeCIDR, "dev", "e2e0"},
		{"link", "set", "lo", "up"},
		{"link", "set", "e2e0", "up"},
		{"link", "set", "e2e1", "up"},
	} {
		if err := run("ip", append([]string{"-n", netnsName}, args...)...); err != nil {
			return err
		}
	}
	// No kube-proxy: pods reach the apiserver's service address through
	// one DNAT rule, which lives and dies with the namespace.
	if err := c.inNetns("iptables", "-t", "nat", "-A", "PREROUTING", "-d", serviceIP, "-p", "tcp", "--dport", "443",
		"-j", "DNAT", "--to-destination", nodeIP+":6443"); err != nil {
		return err
	}
	// Bidirectional mount propagation needs the kubelet and state
	// directories on shared mounts.
	for _, d := range []string{kubeletDir, "/var/lib/bucket-csi"} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return err
		}
		if err := run("mount", "--bind", d, d); err != nil {
			return err
		}
		if err := run("mount", "--make-rshared", d); err != nil {
			return err
		}
	}
	return os.WriteFile(c.path("resolv.conf"), []byte("nameserver "+nodeIP+"\n"), 0o644)
}

func (c *cluster) etcd() error {
	if err := c.startDaemon("etcd", c.bin("etcd"), "--data-dir", c.path("etcd"),
		"--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
		"--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "default=http://127.0.0.1:2380", "--unsafe-no-fsync"); err != nil {
		return err
	}
	return c.waitDaemon("etcd", 30*time.Second, func() error { return c.inNetns("curl", "-sf", "http://127.0.0.1:2379/health") })
}

func (c *cluster) apiserver() error {
	pki := c.path("pki")
	p := func(f string) string { return filepath.Join(pki, f) }
	for _, n := range []string{"admin", "controller-manager", "scheduler", "kubelet"} {
		if _, err := kubeconfig(pki, n, "https://"+nodeIP+":6443"); err != nil {
			return err
		}
	}
	if err := c.startDaemon("kube-apiserver", c.bin("kube-apiserver"),
		"--etcd-servers=http://127.0.0.1:2379", "--advertise-address="+nodeIP, "--bind-address="+nodeIP, "--secure-port=6443",
		"--service-cluster-ip-range="+serviceCIDR, "--allow-privileged=true", "--authorization-mode=Node,RBAC",
		"--client-ca-file="+p("ca.crt"), "--tls-cert-file="+p("apiserver.crt"), "--tls-private-key-file="+p("apiserver.key"),
		"--kubelet-client-certificate="+p("apiserver-kubelet.crt"), "--kubelet-client-key="+p("apiserver-kubelet.key"),
		"--kubelet-certificate-authority="+p("ca.crt"), "--kubelet-preferred-address-types=InternalIP",
		"--service-account-key-file="+p("sa.pub"), "--service-account-signing-key-file="+p("sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc", "--endpoint-reconciler-type=lease"); err != nil {
		return err
	}
	return c.waitDaemon("kube-apiserver", 90*time.Second, func() error { return c.kubectl("get", "--raw", "/readyz") })
}

func (c *cluster) controllers() error {
	pki := c.path("pki")
	p := func(f string) string { return filepath.Join(pki, f) }
	if err := c.startDaemon("kube-controller-manager", c.bin("kube-controller-manager"),
		"--kubeconfig="+p("controller-manager.kubeconfig"), "--authentication-kubeconfig="+p("controller-manager.kubeconfig"),
		"--authorization-kubeconfig="+p("controller-manager.kubeconfig"), "--bind-address=127.0.0.1",
		"--leader-elect=false", "--use-service-account-credentials", "--service-account-private-key-file="+p("sa.key"),
		"--root-ca-file="+p("ca.crt"), "--cluster-signing-cert-file="+p("ca.crt"), "--cluster-signing-key-file="+p("ca.key"),
		"--service-cluster-ip-range="+serviceCIDR); err != nil {
		return err
	}
	if err := c.startDaemon("kube-scheduler", c.bin("kube-scheduler"), "--kubeconfig="+p("scheduler.kubeconfig"),
		"--authentication-kubeconfig="+p("scheduler.kubeconfig"), "--authorization-kubeconfig="+p("scheduler.kubeconfig"),
		"--bind-address=127.0.0.1", "--leader-elect=false"); err != nil {
		return err
	}
	// The default service account must exist before pods can be created.
	return c.waitDaemon("kube-controller-manager", 60*time.Second, func() error { return c.kubectl("get", "serviceaccount", "default") })
}

func (c *cluster) containerd() error {
	cni := fmt.Sprintf(`{"cniVersion": "0.4.0", "name": "e2e", "plugins": [
  {"type": "bridge", "bridge": "e2ecni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}`, podCIDR)
	if err := os.WriteFile(c.path("cni", "net.d", "10-e2e.conflist"), []byte(cni), 0o644); err != nil {
		return err
	}
	// restrict_oom_score_adj: this VM lacks CAP_SYS_RESOURCE, and runc fails
	// a sandbox whose oom_score_adj would go below containerd's own.
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
[grpc]
  address = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %q
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = false
`, c.path("containerd", "root"), c.path("containerd", "state"), c.containerdSock(), pauseImage, c.path("cni", "net.d"))
	if err := os.WriteFile(c.path("containerd.toml"), []byte(cfg), 0o644); err != nil {
		return err
	}
	if err := c.startDaemon("containerd", "containerd", "--config", c.path("containerd.toml")); err != nil {
		return err
	}
	return c.waitDaemon("containerd", 30*time.Second, func() error { return run("ctr", "--address", c.containerdSock(), "version") })
}

func (c *cluster) containerdSock() string { return c.path("containerd", "containerd.sock") }

func (c *cluster) kubelet() error {
	pki := c.path("pki")
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://%s
address: %s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %q}
authorization: {mode: Webhook}
tlsCertFile: %q
tlsPrivateKeyFile: %q
resolvConf: %q
podCIDR: %s
maxPods: 50
evictionHard: {memory.available: "100Mi", nodefs.available: "1%%", imagefs.available: "1%%"}
imageGCHighThresholdPercent: 100
serializeImagePulls: false
`, c.containerdSock(), nodeIP, filepath.Join(pki, "ca.crt"), filepath.Join(pki, "apiserver.crt"), filepath.Join(pki, "apiserver.key"), c.path("resolv.conf"), podCIDR)
	if err := os.WriteFile(c.path("kubelet.yaml"), []byte(cfg), 0o644); err != nil {
		return err
	}
	if err := os.MkdirAll(c.path("kubelet-pki"), 0o700); err != nil {
		return err
	}
	if err := c.startDaemon("kubelet", c.bin("kubelet"), "--config="+c.path("kubelet.yaml"),
		"--kubeconfig="+filepath.Join(pki, "kubelet.kubeconfig"), "--root-dir="+kubeletDir, "--cert-dir="+c.path("kubelet-pki"),
		"--hostname-override="+nodeName, "--node-ip="+nodeIP, "--v=2"); err != nil {
		return err
	}
	return c.waitDaemon("kubelet", 120*time.Second, func() error {
		return c.kubectl("wait", "--for=condition=Ready", "node/"+nodeName, "--timeout=1s")
	})
}

// s3 starts versitygw on the node's address, so pods reach it.
func (c *cluster) s3() error {
	versitygw := filepath.Join(c.repo, "bin", "versitygw")
	// A bucket of versitygw's posix backend is a directory: the storage
	// e2e suite's inline volumes use this one.
	if err := os.MkdirAll(c.path("s3", inlineBucket), 0o755); err != nil {
		return err
	}
	c.env = []string{"ROOT_ACCESS_KEY_ID=" + s3AccessKey, "ROOT_SECRET_ACCESS_KEY=" + s3SecretKey}
	defer func() { c.env = nil }()
	// --keep-alive: as cloud stores do, and as internal/localenv starts it;
	// without it versitygw closes every connection after one request.
	if err := c.startDaemon("versitygw", versitygw, "--port", net.JoinHostPort(nodeIP, s3Port), "--keep-alive", "posix", c.path("s3")); err != nil {
		return err
	}
	return c.waitDaemon("versitygw", 30*time.Second, func() error {
		return c.inNetns("curl", "-s", "-o", "/dev/null", "http://"+net.JoinHostPort(nodeIP, s3Port))
	})
}

// install runs helm install of the chart with the image built here and the
// test S3 server's address; then it waits for the node plugin to register.
func (c *cluster) install() error {
	helm := filepath.Join(c.repo, "bin", "helm")
	args := []string{"upgrade", "--install", "bucket-csi", filepath.Join(c.repo, "charts", "bucket-csi"),
		"--namespace", "bucket-csi", "--create-namespace", "--kubeconfig", c.kubeconfig(),
		"--set", "image.repository=" + driverRepo, "--set", "image.tag=" + driverTag,
		"--set", "stores.s3.endpoint=http://" + net.JoinHostPort(nodeIP, s3Port), "--set", "stores.s3.pathStyle=true",
		"--set", "inline.stores={s3}", "--set", "controller.replicas=1",
		// The driver's own identity for volumes without a Secret, and inline
		// MOUNT_CACHED: Kubernetes' storage e2e suite declares inline
		// volumes by attributes only.
		"--set", "credentials.existingSecret=" + credentialsSecret, "--set", "inline.ambientCredentials=true",
		"--set", "inline.modes={MOUNT,MOUNT_CACHED}",
		// Scenario 3 declares one inline volume more than this in a pod;
		// the storage e2e suite uses at most two per namespace.
		"--set", fmt.Sprintf("inline.perNamespace=%d", inlinePerNamespace),
		"--wait", "--timeout", "3m"}
	if err := c.credentials(); err != nil {
		return err
	}
	cmd := exec.Command("nsenter", append([]string{"--net=" + c.netnsPath(), "--", helm}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+c.dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("helm: %w\n%s", err, out)
	}
	return waitFor("CSINode registration", 60*time.Second, func() error {
		out, err := c.kubectlOut("get", "csinode", nodeName, "-o", "jsonpath={.spec.drivers[*].name}")
		if err == nil && !strings.Contains(out, "bucket.csi.io") {
			err = fmt.Errorf("drivers %q", out)
		}
		return err
	})
}

// inlinePerNamespace is the cluster's cap on one namespace's inline
// volumes on the node (the chart's inline.perNamespace), given to the
// scenarios as E2E_INLINE_PER_NAMESPACE.
const inlinePerNamespace = 4

// inlineBucket is the existing bucket of the storage e2e suite's inline
// volumes (test/storage-e2e).
const inlineBucket = "e2e-inline"

// credentialsSecret holds the test S3 server's keys as the environment
// variables the driver's own identity is read from.
const credentialsSecret = "e2e-credentials"

// credentials creates the driver's namespace and its credentials Secret.
func (c *cluster) credentials() error {
	if err := c.kubectl("create", "namespace", "bucket-csi"); err != nil && !strings.Contains(err.Error(), "AlreadyExists") {
		return err
	}
	err := c.kubectl("-n", "bucket-csi", "create", "secret", "generic", credentialsSecret,
		"--from-literal=AWS_ACCESS_KEY_ID="+s3AccessKey, "--from-literal=AWS_SECRET_ACCESS_KEY="+s3SecretKey)
	if err != nil && !strings.Contains(err.Error(), "AlreadyExists") {
		return err
	}
	return nil
}

func (c *cluster) kubectl(args ...string) error {
	_, err := c.kubectlOut(args...)
	return err
}

func (c *cluster) kubectlOut(args ...string) (string, error) {
	cmd := exec.Command("nsenter", append([]string{"--net=" + c.netnsPath(), "--", c.bin("kubectl"), "--kubeconfig", c.kubeconfig()}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
