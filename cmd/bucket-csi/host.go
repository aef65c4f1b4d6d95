package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/bucket-csi/bucket-csi/pkg/logging"
	"github.com/bucket-csi/bucket-csi/pkg/mounter"
	"github.com/bucket-csi/bucket-csi/pkg/store"
	"github.com/bucket-csi/bucket-csi/pkg/stores"
)

// mounterHost runs `bucket-csi mounter-host`: the long-lived process that
// starts FUSE servers for the node plugin (see pkg/mounter/host.go).
func mounterHost(args []string) error {
	fs := flag.NewFlagSet("bucket-csi mounter-host", flag.ContinueOnError)
	socket := fs.String("socket", "/run/bucket-csi/mounter.sock", "Unix socket the node plugin connects to")
	logFormat := fs.String("log-format", logging.Text, "text or json (the FUSE servers log as the node plugin asks them to)")
	dirs := fs.String("allowed-dirs", "/var/lib/kubelet,/var/lib/bucket-csi", "directories whose paths the host mounts on and writes to (comma-separated: the kubelet directory and the driver's state directory); requests naming any other path are refused")
	if err := fs.Parse(args); err != nil {
		return err
	}
	allowed, err := mounter.NewAllowed(strings.Split(*dirs, ","))
	if err != nil {
		return fmt.Errorf("--allowed-dirs: %w", err)
	}
	log, err := logging.New(os.Stderr, *logFormat, "")
	if err != nil {
		return fmt.Errorf("--log-format: %w", err)
	}
	// Every kind's ambient-credential variables, as the default flags
	// configure them.
	reg, err := stores.Flags(flag.NewFlagSet("stores", flag.ContinueOnError))(os.Getenv)
	if err != nil {
		reg = store.Registry{}
	}
	sup := &mounter.Supervisor{Env: passthroughEnv(reg.Env())}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return mounter.ServeHost(ctx, *socket, sup, allowed, log)
}
