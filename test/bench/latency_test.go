package bench

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/bucket-csi/bucket-csi/internal/netdelay"
	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// Environment of the latency proxy process: the bench binary started
// again with these serves as the proxy (see TestMain).
const (
	proxyTargetEnv = "BENCH_PROXY_TARGET"
	proxyRTTEnv    = "BENCH_PROXY_RTT"
)

// latencyProxy is the proxy process between the clients and the server.
type latencyProxy struct {
	cmd  *exec.Cmd
	stop func()
}

// startLatencyProxy starts this binary as a netdelay proxy in front of
// srv, on the server's CPU (pinCPU, may be empty) so that forwarding
// costs the clients' CPU nothing, as a network would; it returns the
// server as the clients reach it through the proxy.
func startLatencyProxy(srv *testenv.S3, rtt time.Duration, pinCPU string) (*testenv.S3, *latencyProxy, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	argv := []string{self}
	if pinCPU != "" {
		argv = append([]string{"taskset", "-c", pinCPU}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), proxyTargetEnv+"="+strings.TrimPrefix(srv.Endpoint, "http://"), proxyRTTEnv+"="+rtt.String())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	p := &latencyProxy{cmd: cmd, stop: func() {
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}}
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		p.stop()
		return nil, nil, fmt.Errorf("latency proxy did not start: %w", err)
	}
	remote := *srv.S3
	remote.Endpoint = "http://" + strings.TrimSpace(addr)
	return &testenv.S3{S3: &remote, KeyFile: srv.KeyFile}, p, nil
}

// serveProxy is the proxy process: it forwards to target with rtt added,
// prints its address on stdout and runs until stdin closes (the bench
// process ended). It returns the exit code.
func serveProxy(target, rtt string) int {
	d, err := time.ParseDuration(rtt)
	if err != nil {
		fmt.Fprintln(os.Stderr, "latency proxy:", err)
		return 2
	}
	p := &netdelay.Proxy{Target: target, RTT: d}
	if err := p.Listen("127.0.0.1:0"); err != nil {
		fmt.Fprintln(os.Stderr, "latency proxy:", err)
		return 1
	}
	fmt.Println(p.Addr())
	_, _ = bufio.NewReader(os.Stdin).ReadString(0) // until EOF
	_ = p.Close()
	return 0
}
