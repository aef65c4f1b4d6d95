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
	"slices"
	"strings"
	"syscall"
	"time"

	rfs "github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/lib/atexit"

	"github.com/bucket-csi/bucket-csi/pkg/bucket"
	"github.com/bucket-csi/bucket-csi/pkg/budget"
	"github.com/bucket-csi/bucket-csi/pkg/copier"
	"github.com/bucket-csi/bucket-csi/pkg/driver"
	"github.com/bucket-csi/bucket-csi/pkg/kube"
	"github.com/bucket-csi/bucket-csi/pkg/logging"
	"github.com/bucket-csi/bucket-csi/pkg/metrics"
	"github.com/bucket-csi/bucket-csi/pkg/mounter"
	"github.com/bucket-csi/bucket-csi/pkg/nodestate"
	"github.com/bucket-csi/bucket-csi/pkg/redact"
	"github.com/bucket-csi/bucket-csi/pkg/stage"
	"github.com/bucket-csi/bucket-csi/pkg/store"
	"github.com/bucket-csi/bucket-csi/pkg/stores"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// serveFlags are the driver's command-line settings.
type serveFlags struct {
	endpoint, nodeID, services, stateDir, cacheDir, defaultStore, bucketPrefix, logLevel string
	dirCacheTime, writeBack                                                              time.Duration
	cacheMaxSize, copyWriteSpace                                                         int64
	keepCopies, inlineAmbient                                                            bool
	inlineStores, inlineModes, mounterSocket                                             string
	ownershipKeyFile, kubeconfig                                                         string
	metricsAddress, logFormat                                                            string
	copyWorkers, copyJobs, maxServers, inlinePerNamespace                                int
	uploadTransfers, readChunkStreams                                                    int
	objectMTimes                                                                         bool
	readChunkSize                                                                        int64
	diskBudget, readAheadNode, readAheadServer                                           int64
	diskBudgetFraction                                                                   float64
	stores                                                                               func(getenv func(string) string) (store.Registry, error)
	sidecars                                                                             sidecarFlags
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
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error (the FUSE servers log at it too)")
	fs.StringVar(&f.logFormat, "log-format", logging.Text, "text (key=value) or json (one object per line), for the driver and its FUSE servers")
	fs.StringVar(&f.cacheDir, "cache-dir", "", "MOUNT_CACHED cache root (default <state-dir>/cache)")
	fs.Int64Var(&f.cacheMaxSize, "cache-max-size", 0, "MOUNT_CACHED cache size limit per volume in bytes, reserved from the node disk budget (0: min(10 GiB, budget/4))")
	fs.Int64Var(&f.diskBudget, "node-disk-budget", 0, "bytes of node disk that COPY copies and MOUNT_CACHED caches may reserve in all (0: --node-disk-budget-fraction of the state directory's free space)")
	fs.Float64Var(&f.diskBudgetFraction, "node-disk-budget-fraction", 0.8, "fraction of the state directory's free space, measured when the plugin starts with no volume staged, that makes the node disk budget")
	fs.Int64Var(&f.readAheadNode, "read-ahead-node-memory", 1<<30, "MOUNT and MOUNT_CACHED: bytes of read-ahead and small-file prefetch memory shared by all FUSE servers of the node")
	fs.Int64Var(&f.readAheadServer, "read-ahead-server-memory", 0, "MOUNT: read-ahead memory of one FUSE server in bytes (0: min(256 MiB, --read-ahead-node-memory/8))")
	fs.IntVar(&f.maxServers, "max-fuse-servers", DefaultMaxServers, "MOUNT and MOUNT_CACHED: FUSE servers this node runs at most, one per staged volume; one more is refused with ResourceExhausted (0: no cap)")
	fs.IntVar(&f.uploadTransfers, "upload-transfers", 1, "MOUNT_CACHED parallel uploads per volume (1 keeps close order)")
	fs.DurationVar(&f.writeBack, "write-back", time.Second, "MOUNT_CACHED delay between a file's last close and its upload")
	fs.StringVar(&f.mounterSocket, "mounter-socket", "", "socket of a `bucket-csi mounter-host` that starts the FUSE servers (empty: this process starts them)")
	fs.StringVar(&f.inlineStores, "inline-stores", "", "stores inline ephemeral volumes may use (comma-separated; empty: inline volumes are refused)")
	fs.StringVar(&f.inlineModes, "inline-modes", "MOUNT", "modes inline ephemeral volumes may use (comma-separated: MOUNT, COPY, MOUNT_CACHED); COPY and MOUNT_CACHED keep data on the node's disk")
	fs.BoolVar(&f.inlineAmbient, "inline-ambient-credentials", false, "let inline volumes without a secret use the driver's own identity")
	fs.IntVar(&f.inlinePerNamespace, "inline-volumes-per-namespace", DefaultInlinePerNamespace, "inline ephemeral volumes of one namespace staged on this node at once; one more is refused with ResourceExhausted (0: no cap)")
	fs.Int64Var(&f.copyWriteSpace, "copy-write-space", 0, "room in bytes for what pods write into a writable COPY volume, reserved from the node disk budget with the copy (0: min(1 GiB, budget/16))")
	fs.BoolVar(&f.keepCopies, "keep-copies", false, "keep COPY data after unstage so a later stage fetches only changes")
	fs.IntVar(&f.copyWorkers, "copy-workers", copier.DefaultWorkers, "COPY objects or ranges fetched in parallel")
	fs.IntVar(&f.copyJobs, "copy-jobs", stage.DefaultParallel, "COPY volumes copied at once on the node (each holds up to about 150 MiB of the plugin's memory while it lists); others wait; one namespace runs at most one less (1 when this is 1)")
	fs.IntVar(&f.readChunkStreams, "read-chunk-streams", 0, "MOUNT: most parallel ranged GETs of one sequential read, twice as many from a far store (0: default, 4)")
	fs.Int64Var(&f.readChunkSize, "read-chunk-size", 0, "MOUNT: size of each ranged GET of a sequential read in bytes (0: default, 8 MiB)")
	fs.BoolVar(&f.objectMTimes, "mount-object-mtimes", false, "MOUNT: show the mtime uploaders keep in object metadata (one HEAD request per file) instead of the object's last-modified time")
	fs.DurationVar(&f.dirCacheTime, "dir-cache-time", 10*time.Second, "how long mounts trust a directory listing")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster whose PersistentVolumes the controller checks before a bucket is purged and where the node plugin records events on pods and PersistentVolumes (default: the pod's service account when in a pod; none outside: no events)")
	fs.StringVar(&f.ownershipKeyFile, "ownership-key-file", "", "file holding the key (at least 32 bytes) that signs the mark of every bucket the controller creates; without it the controller neither creates nor deletes buckets")
	fs.StringVar(&f.metricsAddress, "metrics-address", "", "serve Prometheus metrics at GET /metrics on this TCP address (e.g. :9811; empty: off)")
	f.stores = stores.Flags(fs)
	f.sidecars.register(fs)
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
	// COPY volumes' secrets are masked in this log while their copy runs
	// (rclone logs here); engine errors are masked where they leave.
	var masks redact.Set
	log, err := logging.New(masks.Writer(os.Stderr), f.logFormat, f.logLevel)
	if err != nil {
		return fmt.Errorf("--log-format, --log-level: %w", err)
	}
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
	kinds := stores.Catalog()
	if err := volume.ValidateBucket(kinds, "s3", volume.DeriveBucketName(f.bucketPrefix, "pvc-0")); err != nil {
		return fmt.Errorf("--bucket-prefix %q does not make valid bucket names: %w", f.bucketPrefix, err)
	}
	if cfg.Stores, err = f.stores(os.Getenv); err != nil {
		return err
	}
	if _, ok := cfg.Stores[f.defaultStore]; !ok {
		return fmt.Errorf("--default-store %q is not among --stores %q", f.defaultStore, strings.Join(cfg.Stores.Kinds(), ","))
	}
	cfg.Inline.AmbientCredentials = f.inlineAmbient
	if f.inlinePerNamespace < 0 {
		return errors.New("--inline-volumes-per-namespace must not be negative")
	}
	if f.copyJobs < 1 {
		return errors.New("--copy-jobs must be at least 1")
	}
	cfg.Inline.PerNamespace = f.inlinePerNamespace
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
	// No modes means MOUNT only (driver.InlinePolicy).
	fuse := len(cfg.Inline.Modes) == 0 || slices.Contains(cfg.Inline.Modes, volume.ModeMount) || slices.Contains(cfg.Inline.Modes, volume.ModeMountCached)
	if cfg.Node && len(cfg.Inline.Stores) > 0 && fuse && f.maxServers > 0 && (f.inlinePerNamespace == 0 || f.inlinePerNamespace >= f.maxServers) {
		log.Warn("--inline-volumes-per-namespace is 0 or not below --max-fuse-servers: one namespace's inline MOUNT and MOUNT_CACHED volumes can take every FUSE server place of the node",
			"inlineVolumesPerNamespace", f.inlinePerNamespace, "maxFUSEServers", f.maxServers)
	}
	cfg.Defaults = volume.Defaults{Store: f.defaultStore, Stores: cfg.Stores.Kinds(), Kinds: kinds}
	if cfg.Controller {
		if cfg.PVs, err = kube.NewPVLister(f.kubeconfig, os.Getenv("KUBERNETES_SERVICE_HOST") != ""); err != nil {
			return fmt.Errorf("--kubeconfig: %w", err)
		}
		if cfg.Ownership, err = loadKeeper(f.ownershipKeyFile); err != nil {
			return err
		}
		if cfg.Ownership == nil {
			log.Warn("no --ownership-key-file: CreateVolume and DeleteVolume of buckets the driver manages answer FailedPrecondition; only `source` volumes work")
		}
	}
	if cfg.Node {
		stateDir, err := canonicalDir(f.stateDir, "")
		if err != nil {
			return fmt.Errorf("--state-dir: %w", err)
		}
		state := nodestate.Dir{Root: stateDir}
		cfg.State = state
		sup := &mounter.Supervisor{Env: passthroughEnv(cfg.Stores.Env()), Host: f.mounterSocket}
		settings := stage.Settings{LogFormat: f.logFormat, LogLevel: f.logLevel, DirCacheTime: f.dirCacheTime, ReadChunkStreams: f.readChunkStreams, ReadChunkSize: f.readChunkSize, ObjectMTimes: f.objectMTimes}
		cacheDir, err := canonicalDir(f.cacheDir, filepath.Join(stateDir, "cache"))
		if err != nil {
			return fmt.Errorf("--cache-dir: %w", err)
		}
		disk, mem, servers, err := f.budgets(state, log)
		if err != nil {
			return err
		}
		cfg.Stagers = map[volume.Mode]stage.Stager{
			volume.ModeMount: &stage.Mount{Supervisor: sup, Stores: cfg.Stores, Settings: settings,
				Memory: mem, ServerMemory: f.serverMemory(), Servers: servers},
			volume.ModeMountCached: &stage.Cached{Supervisor: sup, Stores: cfg.Stores, Settings: settings,
				CacheRoot: cacheDir, CacheMaxSize: f.cacheMaxSize, Transfers: f.uploadTransfers, WriteBack: f.writeBack, Disk: disk, Memory: mem, Servers: servers},
			volume.ModeCopy: &stage.Copy{Stores: cfg.Stores, Root: filepath.Join(stateDir, "copies"), Keep: f.keepCopies, WriteSpace: f.copyWriteSpace,
				Options: copier.Options{Workers: f.copyWorkers}, Parallel: f.copyJobs, Log: log, Disk: disk, Redact: &masks},
		}
	}
	reg, err := f.metrics(&cfg)
	if err != nil {
		return err
	}
	stopEvents, err := f.events(&cfg, log)
	if err != nil {
		return err
	}
	defer stopEvents()
	d := driver.New(cfg)
	watchVolumes(reg, cfg, d)
	if reg != nil {
		addr, stopMetrics, err := metrics.Serve(f.metricsAddress, reg, log)
		if err != nil {
			return err
		}
		defer stopMetrics()
		log.Info("serving metrics", "address", addr)
	}
	l, err := driver.Listen(f.endpoint)
	if err != nil {
		return err
	}
	srv := d.NewGRPCServer()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// Kubelet registration and /healthz: a failure of either stops the driver.
	waitSidecars, err := f.sidecars.start(ctx, f.endpoint, cfg.Node, log)
	if err != nil {
		srv.Stop()
		return err
	}
	sidecarErr := make(chan error, 1)
	go func() {
		err := waitSidecars()
		if err != nil {
			stop()
		}
		sidecarErr <- err
	}()
	go func() {
		<-ctx.Done()
		// FUSE servers are separate processes and keep serving.
		log.Info("shutting down; mounts stay served")
		srv.GracefulStop()
	}()
	log.Info("serving", "endpoint", f.endpoint, "controller", cfg.Controller, "node", cfg.Node, "version", version)
	err = srv.Serve(l)
	stop()
	return errors.Join(err, <-sidecarErr)
}

// budgets opens the node's disk, read-ahead memory and FUSE server ledgers
// in the state directory, keeping the reservations of volumes still staged
// (or, for disk, still on disk: kept copies, caches not yet drained).
// servers is nil with --max-fuse-servers 0.
func (f *serveFlags) budgets(state nodestate.Dir, log *slog.Logger) (disk, mem, servers *budget.Ledger, err error) {
	if f.readAheadNode <= 0 || f.readAheadServer < 0 || f.diskBudget < 0 || f.maxServers < 0 {
		return nil, nil, nil, errors.New("--read-ahead-node-memory must be positive, --read-ahead-server-memory, --node-disk-budget and --max-fuse-servers not negative")
	}
	recs, err := state.All()
	if err != nil {
		return nil, nil, nil, err
	}
	staged := map[string]bool{}
	for _, r := range recs {
		staged[r.VolumeID] = true
	}
	live := func(id string) bool { return staged[id] }
	disk, err = budget.Open(filepath.Join(state.Root, "disk-budget.json"), budget.Options{
		Fixed: f.diskBudget, Fraction: f.diskBudgetFraction, Live: live,
		Measure: func() (int64, error) { return budget.DiskFree(state.Root) },
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("--node-disk-budget: %w", err)
	}
	disk.Log, disk.Remove = log, stage.RemoveCopy
	disk.Name, disk.Hint = "node disk", "raise --node-disk-budget or stage fewer COPY and MOUNT_CACHED volumes on this node"
	mem, err = budget.Open(filepath.Join(state.Root, "memory-budget.json"), budget.Options{Fixed: f.readAheadNode, Live: live})
	if err != nil {
		return nil, nil, nil, err
	}
	mem.Name = "read-ahead memory"
	if f.maxServers > 0 {
		servers, err = budget.Open(filepath.Join(state.Root, "server-budget.json"), budget.Options{Fixed: int64(f.maxServers), Live: live})
		if err != nil {
			return nil, nil, nil, err
		}
		servers.Name, servers.Unit = "FUSE servers", "servers"
		servers.Hint = "raise --max-fuse-servers (each server takes about 50 MiB of the mounter's memory besides its read-ahead) or stage fewer MOUNT and MOUNT_CACHED volumes on this node"
		// Volumes staged before the cap (an upgrade, or a cap of 0 before)
		// hold a place too; past the cap they run on, logged.
		for _, r := range recs {
			if _, held := servers.Get(r.VolumeID); held || (r.Mode != volume.ModeMount && r.Mode != volume.ModeMountCached) {
				continue
			}
			if err := servers.Reserve(r.VolumeID, 1, ""); err != nil {
				log.Warn("a staged volume's FUSE server is past --max-fuse-servers", "volume", r.VolumeID, "err", err)
			}
		}
	}
	dropped := append(disk.Dropped, mem.Dropped...)
	if servers != nil {
		dropped = append(dropped, servers.Dropped...)
	}
	log.Info("node budgets", "diskBudget", disk.Budget(), "diskReserved", disk.Reserved(), "readAheadMemory", mem.Budget(),
		"readAheadReserved", mem.Reserved(), "maxFUSEServers", f.maxServers, "dropped", dropped)
	return disk, mem, servers, nil
}

// DefaultMaxServers is --max-fuse-servers when it is not given: an idle
// FUSE server takes about 52 MiB (docs/benchmarks.md, Idle RSS), so 48 of
// them, with the default 1 GiB of read-ahead memory, stay within the
// chart's 4 GiB memory limit for the mounter, whose container runs every
// FUSE server of the node.
const DefaultMaxServers = 48

// DefaultInlinePerNamespace is --inline-volumes-per-namespace when it is
// not given: a third of the default FUSE server places, so that the pods
// of one namespace, which need no PersistentVolumeClaim (and no quota) to
// declare inline volumes, cannot take every place of a node.
const DefaultInlinePerNamespace = 16

// serverMemory is the read-ahead memory one FUSE server asks for.
func (f *serveFlags) serverMemory() int64 {
	if f.readAheadServer > 0 {
		return f.readAheadServer
	}
	return min(256<<20, f.readAheadNode/8)
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

// canonicalDir makes dir (or def when dir is empty) and returns its
// absolute path without symlinks: mount points below it are found in
// mountinfo by path, which names them that way.
func canonicalDir(dir, def string) (string, error) {
	if dir == "" {
		dir = def
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(dir)
}
