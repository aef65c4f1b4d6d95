package localenv

import (
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// Server is a local emulator process.
type Server struct {
	// Endpoint is the base URL clients use.
	Endpoint string
	Log      fmt.Stringer
	cmd      *exec.Cmd
}

// Stop kills the server.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	}
}

// startServer runs argv (with env appended to the inherited environment)
// and waits for addr to accept connections.
func startServer(argv, env []string, addr, endpoint string) (*Server, error) {
	log := &syncBuffer{}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(cmd.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", argv[0], err)
	}
	s := &Server{Endpoint: endpoint, Log: log, cmd: cmd}
	if err := waitDial("tcp", addr, 60*time.Second); err != nil {
		s.Stop()
		return nil, fmt.Errorf("%s did not start: %w; output:\n%s", argv[0], err, log.String())
	}
	return s, nil
}

// binaryAndPort finds an emulator binary and a free loopback port for it.
func binaryAndPort(envVar, name string) (bin string, port int, addr string, err error) {
	if bin, err = Binary(envVar, name); err != nil {
		return "", 0, "", err
	}
	if port, err = FreePort(); err != nil {
		return "", 0, "", err
	}
	return bin, port, fmt.Sprintf("127.0.0.1:%d", port), nil
}

// GCSProject is the project the GCS emulator's buckets belong to.
const GCSProject = "bucket-csi-test"

// StartGCS starts fake-gcs-server (pinned in tools/go.mod) in memory on a
// free loopback port. Its Endpoint is the JSON API base the Go client and
// rclone take: http://127.0.0.1:PORT/storage/v1/. pinCPU, if not empty,
// pins it with taskset as StartS3 pins versitygw (the bench keeps servers
// off the clients' CPU).
func StartGCS(pinCPU string) (*Server, error) {
	bin, port, addr, err := binaryAndPort("FAKE_GCS_BIN", "fake-gcs-server")
	if err != nil {
		return nil, err
	}
	argv := []string{bin, "-scheme", "http", "-host", "127.0.0.1", "-port", fmt.Sprint(port),
		"-backend", "memory", "-external-url", "http://" + addr, "-public-host", addr, "-log-level", "warn"}
	if pinCPU != "" {
		argv = append([]string{"taskset", "-c", pinCPU}, argv...)
	}
	return startServer(argv, nil, addr, "http://"+addr+"/storage/v1/")
}

// Azurite's well-known development account (public, documented by
// Microsoft; not a secret).
const (
	AzuriteAccount = "devstoreaccount1"
	AzuriteKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// StartAzurite starts the Azurite blob service (pinned in
// tools/azurite/package-lock.json) in memory on a free loopback port. Its
// Endpoint is the account URL http://127.0.0.1:PORT/devstoreaccount1.
func StartAzurite() (*Server, error) {
	bin, port, addr, err := binaryAndPort("AZURITE_BIN", "azurite-blob")
	if err != nil {
		return nil, err
	}
	argv := []string{bin, "--blobHost", "127.0.0.1", "--blobPort", fmt.Sprint(port), "--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--silent"}
	return startServer(argv, nil, addr, strings.TrimSuffix("http://"+addr+"/"+AzuriteAccount, "/"))
}
