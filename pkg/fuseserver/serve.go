// Package fuseserver is the FUSE server of one MOUNT or MOUNT_CACHED
// volume: the body of the bucket-csi-mounter binary. It reads its
// fuseproto.Config on stdin, mounts with rclone's VFS over go-fuse (the
// read-ahead, durable fsync, metadata guard and statistics of this
// package around it), reports on fd 3 and answers its control socket (see
// fuseproto), and serves until the mount point is unmounted or it
// receives SIGTERM. It is started and supervised by pkg/mounter and never
// imports the driver, the stagers or the supervisor.
package fuseserver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	stdlog "log"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/rclone/rclone/cmd/mount2"
	"github.com/rclone/rclone/cmd/mountlib"
	"github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/config"
	"github.com/rclone/rclone/lib/atexit"
	"github.com/rclone/rclone/vfs"
	"github.com/rclone/rclone/vfs/vfscommon"

	"github.com/bucket-csi/bucket-csi/pkg/bucket"
	"github.com/bucket-csi/bucket-csi/pkg/cachejournal"
	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/fuseproto"
	"github.com/bucket-csi/bucket-csi/pkg/keyfilter"
	"github.com/bucket-csi/bucket-csi/pkg/logging"
	"github.com/bucket-csi/bucket-csi/pkg/readahead"
	"github.com/bucket-csi/bucket-csi/pkg/redact"
	"github.com/bucket-csi/bucket-csi/pkg/remotefs"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// logLimit and logKeep bound a server's log file (its stderr): past
// logLimit bytes it is cut to its last logKeep bytes.
const (
	logLimit = 16 << 20
	logKeep  = 4 << 20
)

// ServeMain is the body of bucket-csi-mounter: it reads the Config from
// stdin, mounts, reports on fd 3 (see fuseproto), and serves until
// unmounted or signalled. It returns the process exit code. A report of
// an error carries its fault kind: a config it refuses is fault.Invalid
// (final), a store it cannot open keeps the kind the engine's error has
// (fault.Unavailable when none).
//
// Everything the server reports leaves through one Redactor built from
// cfg.Redact: the status line and every log line (its own, rclone's and
// go-fuse's) have the volume's secrets masked, whatever an engine error
// quotes. The control socket answers counts only, never engine text.
func ServeMain() int {
	var red *redact.Redactor
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	status := os.NewFile(fuseproto.StatusFD, "status")
	report := func(err error) {
		if status == nil {
			return
		}
		msg := fuseproto.OKLine + "\n"
		if err != nil {
			// One line: the supervisor reads up to the first newline.
			msg = fuseproto.ErrorLine(err, red.String(err.Error())) + "\n"
		}
		_, _ = status.WriteString(msg)
		_ = status.Close()
		status = nil
	}
	var cfg fuseproto.Config
	data, err := io.ReadAll(io.LimitReader(os.Stdin, fuseproto.MaxConfigBytes))
	if err == nil {
		err = json.Unmarshal(data, &cfg)
	}
	if err != nil {
		err = fmt.Errorf("%w: reading the config: %v", fault.Invalid, err)
	}
	red = redact.New(cfg.Redact...)
	cfg.Redact = nil
	stderr := red.Writer(logging.Capped(os.Stderr, logLimit, logKeep))
	log, lerr := logging.New(stderr, cfg.LogFormat, cfg.LogLevel)
	if lerr != nil {
		log = slog.New(slog.NewTextHandler(stderr, nil))
		log.Warn("logging as text at info", "err", lerr)
	}
	stdlog.SetOutput(stderr) // go-fuse and other libraries log through the log package
	if err == nil {
		if err = cfg.Validate(); err != nil {
			err = fmt.Errorf("%w: %v", fault.Invalid, err)
		}
	}
	if err != nil {
		log.Error("bad mounter config", "err", err)
		report(err)
		return 2
	}
	log = log.With("volume", cfg.VolumeID)
	if cfg.PV != "" {
		log = log.With("pv", cfg.PV)
	}
	if err := Serve(context.Background(), &cfg, log, report); err != nil {
		log.Error("mounter stopped", "err", err)
		report(err)
		return 1
	}
	return 0
}

// Serve mounts cfg and blocks until the mount ends. ready is called once the
// kernel mount is live (or with the error that prevented it).
func Serve(ctx context.Context, cfg *fuseproto.Config, log *slog.Logger, ready func(error)) error {
	// rclone's own SIGINT/SIGTERM handler would os.Exit without unmounting.
	atexit.IgnoreSignals()
	defer atexit.Run()
	fs.SetLogger(log.Handler())
	// rclone's plain Debugf reads the process-wide config, and this process
	// serves one volume: the level is set there, before the copy below.
	fs.GetConfig(context.TODO()).LogLevel = fs.LogLevelNotice
	if cfg.LogLevel == "debug" {
		fs.GetConfig(context.TODO()).LogLevel = fs.LogLevelDebug
	}
	ctx, ci := fs.AddConfig(ctx)
	ci.Transfers = max(cfg.Transfers, 1)
	// rclone's HTTP client keeps 2 × (checkers + transfers + 1) idle
	// connections per host: 16 keep one for each of the 32 mtime lookups
	// readahead runs at once. A server checks no files; checkers also
	// bound the server-side copies of a directory rename on a store
	// without one (S3: a copy and a delete per object), now 16 at once
	// instead of 8.
	ci.Checkers = 16
	ci.UseServerModTime = cfg.ServerModTime
	// Before the backend: its HTTP transports count into the meter.
	meter := newMeter()
	if cfg.PrivateDir != "" {
		defer os.RemoveAll(cfg.PrivateDir)
	}
	if cfg.CacheDir != "" {
		if err := config.SetCacheDir(cfg.CacheDir); err != nil {
			return fmt.Errorf("cache directory %q: %w", cfg.CacheDir, err)
		}
	}
	f, err := remotefs.Open(ctx, cfg.Remote, section(cfg), cfg.PrivateDir, remotePath(cfg))
	// The secrets are now in the filesystem only.
	cfg.Remote = nil
	if err != nil {
		return fmt.Errorf("opening %s/%s: %w", cfg.Bucket, cfg.Prefix, err)
	}
	// The cache downloader's buffer follows the store's round trip
	// (roundtrip.go), timed while the cache's journal is opened, on the
	// backend itself (the wrappers below may answer from memory).
	var roundTrip func() (time.Duration, bool)
	if cfg.Cache {
		pctx, cancel := context.WithCancel(ctx)
		defer cancel()
		roundTrip = startProbe(pctx, f, meter.sent)
	}
	// Keys no directory can show (a/../b, a//b, names over 255 bytes, a
	// file that is also a prefix) are hidden from listings, in every mode.
	// At the bucket root the driver's own objects are hidden too;
	// metaGuard refuses every access to them.
	var hide func(string) bool
	if cfg.Prefix == "" {
		hide = bucket.IsMeta
	}
	hidden := &hiddenKeys{} // files written through passthrough
	f = keyfilter.Wrap(f, func(remote string) bool { return hidden.hide(remote) || hide != nil && hide(remote) })
	var release func() // drops memory held for reuse, when idle
	// Where each object's mtime is a request of its own (a HEAD on S3,
	// unless the server's last-modified times are shown), stats in name
	// order look the next ones up ahead, 32 at a time: `ls -l` of 2,500
	// files on MOUNT_CACHED with a 20 ms round trip took 56 s, one HEAD
	// after another, and 2.2 s so (docs/benchmarks.md).
	statAhead := f.Features().SlowModTime && !ci.UseServerModTime
	if cfg.ReadAhead {
		// Streaming reads go through our read-ahead (parallel ranges once
		// sequential, small files fetched ahead in listing order), so
		// rclone's own async buffer would only add a copy and read far
		// past a random read.
		ci.BufferSize = 0
		ra := readahead.Wrap(f, readahead.Options{Window: cfg.ReadChunkStreams, BlockSize: cfg.ReadChunkSize, MemoryLimit: cfg.ReadAheadMemory, StatAhead: statAhead})
		release, f, meter.ra = ra.Release, ra, ra
	} else if cfg.Prefetch {
		// The cache fetches ranges its own way (a Reader would read far
		// past a random read); small files opened in listing order are
		// fetched ahead, 28x faster with a 20 ms round trip
		// (docs/benchmarks.md).
		ra := readahead.Wrap(f, readahead.Options{MemoryLimit: cfg.ReadAheadMemory, SmallFilesOnly: true, StatAhead: statAhead})
		release, f, meter.ra = ra.Release, ra, ra
	}
	var journal *cachejournal.Journal
	if cfg.Cache {
		if journal, err = openJournal(cfg.CacheDir, f, log); err != nil {
			return err
		}
		defer journal.Close()
		if err := completeCache(ctx, journal, f, log); err != nil {
			return err
		}
	}
	if roundTrip != nil {
		rt, ok := roundTrip()
		ci.BufferSize = cacheBuffer(rt, ok, ci.BufferSize)
		meter.cacheBuffer = int64(ci.BufferSize)
		log.Info("cache downloader buffer", "bytes", int64(ci.BufferSize), "storeRoundTrip", rt, "measured", ok)
	}
	v := vfs.New(ctx, f, vfsOptions(cfg))
	defer v.Shutdown()
	if journal != nil {
		if err := checkJournalRoots(journal, v); err != nil {
			return err
		}
	}
	if cfg.ControlSocket != "" {
		stop, err := serveControl(cfg.ControlSocket, v, meter)
		if err != nil {
			return err
		}
		defer stop()
	}

	mopt := mountlib.Opt
	mopt.AllowOther = true
	mopt.AllowNonEmpty = true
	fsys := mount2.NewFS(v, &mopt)
	root, err := fsys.Root()
	if err != nil {
		return err
	}
	attrTimeout := time.Second
	opts := fusefs.Options{
		MountOptions: fuse.MountOptions{
			AllowOther:         true,
			FsName:             "bucket-csi:" + cfg.Bucket,
			Name:               volume.FSName,
			DisableXAttrs:      true,
			MaxReadAhead:       1 << 20,
			MaxWrite:           1 << 20,
			MaxBackground:      maxBackground,
			DisableReadDirPlus: true,
			DirectMount:        true,
		},
		EntryTimeout: &attrTimeout,
		AttrTimeout:  &attrTimeout,
		UID:          cfg.UID,
		GID:          cfg.GID,
	}
	// The kernel checks every access against the owner and mode the VFS
	// shows (uid, gid, umask, the pod's fsGroup); without it any uid in
	// the pod could read and delete any file.
	opts.MountOptions.Options = append(opts.MountOptions.Options, "default_permissions")
	if cfg.ReadOnly {
		opts.MountOptions.Options = append(opts.MountOptions.Options, "ro")
	}
	tracked := newTrackFS(fusefs.NewNodeFS(root, &opts))
	hidden.paths.Store(&tracked.paths)
	var raw fuse.RawFileSystem = tracked
	if cfg.ReadAhead {
		raw = newStreamFS(raw, &tracked.paths, v, log)
	}
	var whole *wholeFS
	var detach *detachFS
	if journal != nil {
		raw = newJournalFS(raw, journal, &tracked.paths, log)
		detach = newDetachFS(raw, journal, &tracked.paths, v, log)
		raw = detach
		if !cfg.ReadOnly {
			whole = newWholeFS(raw, v, journal.Layout(), &tracked.paths, log)
			raw = whole
		}
	}
	if cfg.Cache {
		// Room appears once a file's handle is let go (HandleCaching after
		// its close) and a cleaner pass runs after that.
		raw = newFullFS(raw, cfg.CacheDir, time.Duration(v.Opt.HandleCaching)+2*cachePollInterval)
	}
	var pt *passthroughFS
	if cfg.Durable {
		d := newDurableFS(raw, &tracked.paths, v, journal, cfg.ReadOnly, log) // Durable needs Cache: the journal is open
		raw = d
		if passthroughWanted(cfg) { // a cache: the journal is open
			pt = newPassthroughFS(d, v, journal, hidden, cfg.ServerWrites || cfg.ReadOnly, log)
			raw, meter.pt = pt, pt
			if whole != nil {
				whole.skip = hidden.has
			}
		}
	}
	raw = replaceGuard{RawFileSystem: raw, v: v, paths: &tracked.paths, log: log}
	if cfg.Prefix == "" {
		raw = metaGuard{raw}
	}
	raw = countingFS{RawFileSystem: raw, m: meter}
	server, err := fuse.NewServer(raw, cfg.MountPoint, &opts.MountOptions)
	if err != nil {
		return fmt.Errorf("mounting %s: %w", cfg.MountPoint, err)
	}
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		return fmt.Errorf("waiting for the mount at %s: %w", cfg.MountPoint, err)
	}
	if pt != nil {
		pt.attach(server)
	}
	readAhead, err := setKernelReadAhead(cfg.MountPoint, kernelReadAhead)
	if err != nil {
		log.Warn("kernel read-ahead not raised: buffered reads reach the server in smaller requests", "readAheadBytes", readAhead, "err", err)
	}
	log.Info("mounted", "path", cfg.MountPoint, "bucket", cfg.Bucket, "prefix", cfg.Prefix, "mode", cfg.Mode,
		"cache", cfg.Cache, "durable", cfg.Durable, "readAhead", cfg.ReadAhead, "prefetch", cfg.Prefetch, "serverModTime", cfg.ServerModTime,
		"passthrough", pt != nil, "kernelReadAheadBytes", readAhead)
	ready(nil)
	trimCtx, stopTrim := context.WithCancel(ctx)
	defer stopTrim()
	go trimWhenIdle(trimCtx, release)
	if cfg.Cache {
		go meter.watchPending(trimCtx, v)
	}
	if journal != nil {
		go sweepJournal(trimCtx, journal, v, time.Second, detach.settle)
	}
	if pt != nil {
		go pt.poke(trimCtx)
	}

	served := make(chan struct{})
	go func() { server.Wait(); close(served) }()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-served:
		log.Info("unmounted")
	case sig := <-sigs:
		log.Info("signalled, unmounting", "signal", sig.String())
		if err := server.Unmount(); err != nil {
			log.Warn("unmount failed", "err", err)
		}
		<-served
	}
	if pt != nil {
		pt.finish() // files shared mappings wrote go to the upload queue
	}
	drain(v, log, 10*time.Second)
	return nil
}

// drain gives queued uploads up to limit to finish before the VFS shuts
// down. Whatever is left stays dirty in the cache directory and is uploaded
// by the next server started for the volume.
func drain(v *vfs.VFS, log *slog.Logger, limit time.Duration) {
	deadline := time.Now().Add(limit)
	flushNow(v)
	for st := vfsStatus(v); st.Pending > 0; st = vfsStatus(v) {
		if time.Now().After(deadline) {
			log.Warn("exiting with uploads pending; they resume when the volume is staged again", "status", st.String())
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// vfsOptions maps cfg onto rclone's VFS options.
func vfsOptions(cfg *fuseproto.Config) *vfscommon.Options {
	o := vfscommon.Opt
	o.ReadOnly = cfg.ReadOnly
	o.UID, o.GID = cfg.UID, cfg.GID
	// The modes are final (the VFS masks them with its Umask again, so
	// that is zero): the same rule as COPY's files, see volume.DirMode.
	o.Umask = 0
	o.DirPerms = vfscommon.FileMode(volume.DirMode(cfg.Umask))
	o.FilePerms = vfscommon.FileMode(volume.FileMode(cfg.Umask, cfg.Exec))
	if cfg.DirCacheTime > 0 {
		o.DirCacheTime = fs.Duration(cfg.DirCacheTime)
	}
	o.PollInterval = 0
	o.FastFingerprint = true
	o.CacheMode = vfscommon.CacheModeOff
	if cfg.Cache {
		o.CacheMode = vfscommon.CacheModeFull
		o.WriteBack = fs.Duration(cfg.WriteBack)
		if cfg.CacheMaxSize > 0 {
			o.CacheMaxSize = fs.SizeSuffix(cfg.CacheMaxSize)
			o.CacheMinFreeSpace = fs.SizeSuffix(cacheMinFree(cfg.CacheMaxSize))
		}
		o.CachePollInterval = fs.Duration(cachePollInterval)
		// rclone saves a file's metadata when it lets the file go: with
		// handle caching, some time after the last close; without, at
		// the last close. detachFS must know when an item that lost its
		// name has saved for the last time. Passthrough reads the
		// metadata of a closed file, so a file read and opened again at
		// once is passthrough; and a closed cache file keeps no
		// descriptor in rclone, which could otherwise change it in place
		// (passthrough.go).
		o.HandleCaching = 0
	}
	if cfg.ReadAhead {
		// One open-ended range per open or seek; readahead splits it.
		o.ChunkSize = 0
		o.ChunkStreams = 0
		// The whole-object hash compare costs a CPU-bound MD5 of every
		// sequential read and checks nothing for multipart objects; a
		// short or failed range is an error in readahead.
		o.NoChecksum = true
	}
	return &o
}

// cachePollInterval is how often rclone's cleaner runs: it is what drops
// clean cached data when the cache's filesystem runs short (rclone's 1m
// default would leave a writer refused for as long; fullFS waits for a
// pass). A pass walks the cache's items in memory.
const cachePollInterval = 2 * time.Second

// cacheMinFree is the free space rclone keeps in a cache's filesystem
// (the volume's own image, see stage.Cached) by evicting clean files,
// a sixteenth of the limit held to 4..256 MiB. rclone counts its limit in
// cached bytes, not the blocks they take; without this margin a full
// image would answer ENOSPC while rclone still counts room and evicts
// nothing.
func cacheMinFree(limit int64) int64 {
	return min(max(limit/16, 4<<20), 256<<20)
}

// section is the rclone remote name for the volume: stable for a volume ID
// and free of secrets, so the VFS cache directory holding pending uploads
// stays the same across restarts and credential rotations.
func section(cfg *fuseproto.Config) string {
	return "vol" + volume.DirName(cfg.VolumeID)[:16]
}

// remotePath is the path of the mounted bucket or prefix in the remote.
func remotePath(cfg *fuseproto.Config) string {
	p := cfg.Bucket
	if cfg.Prefix != "" {
		p += "/" + cfg.Prefix
	}
	return p
}
