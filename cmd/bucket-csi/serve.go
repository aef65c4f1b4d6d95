package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	rfs "github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/lib/atexit"

	"github.com/bucket-csi/bucket-csi/pkg/bucket"
	"github.com/bucket-csi/bucket-csi/pkg/copier"
	"github.com/bucket-csi/bucket-csi/pkg/driver"
	"github.com/bucket-csi/bucket-csi/pkg/mounter"
	"github.com/bucket-csi/bucket-csi/pkg/nodestate"
	"github.com/bucket-csi/bucket-csi/pkg/redact"
	"github.com/bucket-csi/bucket-csi/pkg/stage"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// serveFlags are the driver's command-line settings.
type serveFlags struct {
	endpoint, nodeID, services, stateDir, cacheDir, defaultStore, bucketPrefix, logLevel string
	dirCacheTime, writeBack                                                              time.Duration
	cacheMaxSize                                                                         int64
	keepCopies, inlineAmbient                                                            bool
	inlineStores, inlineModes, mounterSocket                                             string
	ownershipKeyFile                                                                     string
	copyWorkers                                                                          int
	uploadTransfers, readChunkStreams                                                    int
	objectMTimes                                                                         bool
	readChunkSize                                                                        int64
	stores                                                                               storeFlags
}

func parseServeFlags(args []string) (*serveFlags, error) {
	f := &serveFlags{}
	fs := flag.NewFlagSet("bucket-csi", flag.ContinueOnError)
	fs.StringVar(&f.endpoint, "endpoint", "unix:///csi/csi.sock", "CSI endpoint (unix:///path/csi.sock)")
	fs.StringVar(&f.nodeID, "node-id", "", "this node's ID (required for the node service)")
	fs.StringVar(&f.services, "services", "controller,node", "services to run: controller, node or both (comma-separated)")
	fs.StringVar(&f.stateDir, "state-dir", "/var/lib/bucket-csi", "node-local state directory")
	fs.StringVar(&f.defaultStore, "default-store", "s3", "store used when a volume names none")
	fs.StringVar(&f.bucketPrefix, "bucket-prefix", "bucket-csi-", "prefix of bucket names derived from PV names")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.cacheDir, "cache-dir", "", "MOUNT_CACHED cache root (default <state-dir>/cache)")
	fs.Int64Var(&f.cacheMaxSize, "cache-max-size", 0, "MOUNT_CACHED cache size limit per volume in bytes (0: unbounded)")
	fs.IntVar(&f.uploadTransfers, "upload-transfers", 1, "MOUNT_CACHED parallel uploads per volume (1 keeps close order)")
	fs.DurationVar(&f.writeBack, "write-back", time.Second, "MOUNT_CACHED delay between a file's last close and its upload")
	fs.StringVar(&f.mounterSocket, "mounter-socket", "", "socket of a `bucket-csi mounter-host` that starts the FUSE servers (empty: this process starts them)")
	fs.StringVar(&f.inlineStores, "inline-stores", "", "stores inline ephemeral volumes may use (comma-separated; empty: inline volumes are refused)")
	fs.StringVar(&f.inlineModes, "inline-modes", "MOUNT", "modes inline ephemeral volumes may use (comma-separated: MOUNT, COPY, MOUNT_CACHED); COPY and MOUNT_CACHED keep data on the node's disk")
	fs.BoolVar(&f.inlineAmbient, "inline-ambient-credentials", false, "let inline volumes without a secret use the driver's own identity")
	fs.BoolVar(&f.keepCopies, "keep-copies", false, "keep COPY data after unstage so a later stage fetches only changes")
	fs.IntVar(&f.copyWorkers, "copy-workers", 32, "COPY objects or ranges fetched in parallel")
	fs.IntVar(&f.readChunkStreams, "read-chunk-streams", 0, "MOUNT: most parallel ranged GETs of one sequential read (0: default, 4)")
	fs.Int64Var(&f.readChunkSize, "read-chunk-size", 0, "MOUNT: size of each ranged GET of a sequential read in bytes (0: default, 8 MiB)")
	fs.BoolVar(&f.objectMTimes, "mount-object-mtimes", false, "MOUNT: show the mtime uploaders keep in object metadata (one HEAD request per file) instead of the object's last-modified time")
	fs.DurationVar(&f.dirCacheTime, "dir-cache-time", 10*time.Second, "how long mounts trust a directory listing")
	fs.StringVar(&f.ownershipKeyFile, "ownership-key-file", "", "file holding the key (at least 32 bytes) that signs the mark of every bucket the controller creates; without it the controller neither creates nor deletes buckets")
	f.stores.register(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return f, nil
}

func serve(args []string) error {
	f, err := parseServeFlags(args)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	// COPY volumes' secrets are masked in this log while their copy runs
	// (rclone logs here); engine errors are masked where they leave.
	var masks redact.Set
	log := slog.New(slog.NewTextHandler(masks.Writer(os.Stderr), &slog.HandlerOptions{Level: level}))
	// COPY runs rclone in this process: route its logs through ours and
	// keep its signal handler from exiting the plugin.
	atexit.IgnoreSignals()
	rfs.SetLogger(log.Handler())
	cfg := driver.Config{Version: version, NodeID: f.nodeID, BucketPrefix: f.bucketPrefix, Log: log}
	for _, s := range strings.Split(f.services, ",") {
		switch strings.TrimSpace(s) {
		case "controller":
			cfg.Controller = true
		case "node":
			cfg.Node = true
		default:
			return fmt.Errorf("--services: unknown service %q (controller, node)", s)
		}
	}
	if cfg.Node && f.nodeID == "" {
		return errors.New("--node-id is required for the node service")
	}
	if err := volume.ValidateBucket("s3", volume.DeriveBucketName(f.bucketPrefix, "pvc-0")); err != nil {
		return fmt.Errorf("--bucket-prefix %q does not make valid bucket names: %w", f.bucketPrefix, err)
	}
	if cfg.Stores, err = f.stores.registry(); err != nil {
		return err
	}
	if _, ok := cfg.Stores[f.defaultStore]; !ok {
		return fmt.Errorf("--default-store %q is not among --stores %q", f.defaultStore, f.stores.kinds)
	}
	cfg.Inline.AmbientCredentials = f.inlineAmbient
	for _, s := range strings.Split(f.inlineStores, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if _, ok := cfg.Stores[s]; !ok {
			return fmt.Errorf("--inline-stores: %q is not a configured store (%s)", s, strings.Join(cfg.Stores.Kinds(), ", "))
		}
		cfg.Inline.Stores = append(cfg.Inline.Stores, s)
	}
	if cfg.Inline.Modes, err = volume.ParseModes(f.inlineModes); err != nil {
		return fmt.Errorf("--inline-modes: %w", err)
	}
	cfg.Defaults = volume.Defaults{Store: f.defaultStore, Stores: cfg.Stores.Kinds()}
	if cfg.Controller {
		if cfg.Ownership, err = loadKeeper(f.ownershipKeyFile); err != nil {
			return err
		}
		if cfg.Ownership == nil {
			log.Warn("no --ownership-key-file: CreateVolume and DeleteVolume of buckets the driver manages answer FailedPrecondition; only `source` volumes work")
		}
	}
	if cfg.Node {
		stateDir, err := filepath.Abs(f.stateDir)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(stateDir, 0o700); err != nil {
			return fmt.Errorf("--state-dir: %w", err)
		}
		cfg.State = nodestate.Dir{Root: stateDir}
		sup := &mounter.Supervisor{Env: passthroughEnv(cfg.Stores.Env()), Host: f.mounterSocket}
		settings := stage.Settings{DirCacheTime: f.dirCacheTime, ReadChunkStreams: f.readChunkStreams, ReadChunkSize: f.readChunkSize, ObjectMTimes: f.objectMTimes}
		cacheDir := f.cacheDir
		if cacheDir == "" {
			cacheDir = filepath.Join(stateDir, "cache")
		}
		cfg.Stagers = map[volume.Mode]stage.Stager{
			volume.ModeMount: &stage.Mount{Supervisor: sup, Stores: cfg.Stores, Settings: settings},
			volume.ModeMountCached: &stage.Cached{Supervisor: sup, Stores: cfg.Stores, Settings: settings,
				CacheRoot: cacheDir, CacheMaxSize: f.cacheMaxSize, Transfers: f.uploadTransfers, WriteBack: f.writeBack},
			volume.ModeCopy: &stage.Copy{Stores: cfg.Stores, Root: filepath.Join(stateDir, "copies"), Keep: f.keepCopies,
				Options: copier.Options{Workers: f.copyWorkers}, Log: log, Redact: &masks},
		}
	}
	d := driver.New(cfg)
	l, err := driver.Listen(f.endpoint)
	if err != nil {
		return err
	}
	srv := d.NewGRPCServer()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		// FUSE servers are separate processes and keep serving.
		log.Info("shutting down; mounts stay served")
		srv.GracefulStop()
	}()
	log.Info("serving", "endpoint", f.endpoint, "controller", cfg.Controller, "node", cfg.Node, "version", version)
	return srv.Serve(l)
}

// passthroughEnv returns PATH and the named variables that are set.
func passthroughEnv(names []string) []string {
	env := []string{"PATH=" + os.Getenv("PATH")}
	for _, n := range names {
		if v, ok := os.LookupEnv(n); ok {
			env = append(env, n+"="+v)
		}
	}
	return env
}

// loadKeeper builds the ownership rules from the key file (nil without
// one): the driver and the storage CLI share it.
func loadKeeper(keyFile string) (*bucket.Keeper, error) {
	if keyFile == "" {
		return nil, nil
	}
	key, err := bucket.LoadKey(keyFile)
	if err != nil {
		return nil, fmt.Errorf("--ownership-key-file: %w", err)
	}
	m, err := bucket.NewMarker(key)
	if err != nil {
		return nil, fmt.Errorf("--ownership-key-file: %w", err)
	}
	return bucket.NewKeeper(m, bucket.NewJournal()), nil
}
