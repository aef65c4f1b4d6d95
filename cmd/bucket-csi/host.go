package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/bucket-csi/bucket-csi/pkg/mounter"
	"github.com/bucket-csi/bucket-csi/pkg/store"
)

// mounterHost runs `bucket-csi mounter-host`: the long-lived process that
// starts FUSE servers for the node plugin (see pkg/mounter/host.go).
func mounterHost(args []string) error {
	fs := flag.NewFlagSet("bucket-csi mounter-host", flag.ContinueOnError)
	socket := fs.String("socket", "/run/bucket-csi/mounter.sock", "Unix socket the node plugin connects to")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var stores storeFlags
	reg, err := (&stores).registry()
	if err != nil {
		reg = store.Registry{}
	}
	sup := &mounter.Supervisor{Env: passthroughEnv(reg.Env())}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return mounter.ServeHost(ctx, *socket, sup, log)
}
