package driver

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bucket-csi/bucket-csi/pkg/bucket"
	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/mountpoint"
	"github.com/bucket-csi/bucket-csi/pkg/nodestate"
	"github.com/bucket-csi/bucket-csi/pkg/stage"
	"github.com/bucket-csi/bucket-csi/pkg/store"
	"github.com/bucket-csi/bucket-csi/pkg/store/memstore"
	"github.com/bucket-csi/bucket-csi/pkg/stores"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// The handler tests run the real Driver over its seams: an in-memory
// store (memstore) behind the registry, a real nodestate.Dir in a
// temporary directory, a mount table in memory (fakeMounts) and stagers
// that "mount" into it (fakeStager). No root, FUSE or server.

// fakeMounts is a mount table in memory with the semantics of
// mountpoint.System that the node service relies on.
type fakeMounts struct {
	mu sync.Mutex
	m  map[string]mountpoint.Info
	// bindErr, when set, fails every Bind.
	bindErr error
	// busy paths answer fault.Pending to Unmount (files still open).
	busy map[string]bool
	// binds counts successful Binds.
	binds int
}

func newFakeMounts() *fakeMounts {
	return &fakeMounts{m: map[string]mountpoint.Info{}, busy: map[string]bool{}}
}

func (f *fakeMounts) Get(path string) (*mountpoint.Info, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if i, ok := f.m[filepath.Clean(path)]; ok {
		return &i, nil
	}
	return nil, nil
}

func (f *fakeMounts) Below(dir string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for p := range f.m {
		if strings.HasPrefix(p, filepath.Clean(dir)+"/") {
			out = append(out, p)
		}
	}
	return out, nil
}

// Bind mounts what is at src on dst: a bind of a FUSE mount shows its
// filesystem type, and a bind of a read-only mount is read-only.
func (f *fakeMounts) Bind(src, dst string, ro bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.bindErr != nil {
		return f.bindErr
	}
	s, ok := f.m[filepath.Clean(src)]
	if !ok {
		s = mountpoint.Info{FSType: "ext4", Source: src}
	}
	f.m[filepath.Clean(dst)] = mountpoint.Info{FSType: s.FSType, Source: s.Source, Major: s.Major, Minor: s.Minor, Root: s.Root, ReadOnly: ro || s.ReadOnly}
	f.binds++
	return nil
}

func (f *fakeMounts) Unmount(path string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.busy[filepath.Clean(path)] {
		return fmt.Errorf("%w: %s is busy", fault.Pending, path)
	}
	delete(f.m, filepath.Clean(path))
	return nil
}

func (f *fakeMounts) Detach(path string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m, filepath.Clean(path))
	return nil
}

// mount puts a mount at path (what a stager's FUSE server does).
func (f *fakeMounts) mount(path string, i mountpoint.Info) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[filepath.Clean(path)] = i
}

func (f *fakeMounts) has(path string) bool {
	m, _ := f.Get(path)
	return m != nil
}

// fakeStager stages a volume by mounting a FUSE-typed entry at the
// staging path; its server "dies" when dead names the volume.
type fakeStager struct {
	mounts *fakeMounts
	mu     sync.Mutex
	// stageErr and unstageErr are returned by Stage and Unstage.
	stageErr, unstageErr error
	// flush makes Unstage report a flush (stage.Unstaged.Flush), as
	// stage.Cached does; discard makes a failed Stage's state
	// disposable (stage.Disposer), as stage.Mount does.
	flush, discard bool
	dead           map[string]bool
	calls          map[string]int
	// conditions is what Check finds (stage.Checker).
	conditions []stage.Condition
	// entered and block, when set, make the next Stage signal entered
	// and wait for block to close (an overlapping call's window).
	entered chan struct{}
	block   chan struct{}
	// copyLike makes Stage mount a plain filesystem, as COPY's bind of
	// the copy is, instead of a FUSE one.
	copyLike bool
	// tenants records each Stage's Request.Tenant.
	tenants []string
}

func newFakeStager(m *fakeMounts) *fakeStager {
	return &fakeStager{mounts: m, dead: map[string]bool{}, calls: map[string]int{}}
}

func (s *fakeStager) count(call string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[call]
}

func (s *fakeStager) note(call string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[call]++
}

func (s *fakeStager) Stage(ctx context.Context, req stage.Request, rec *nodestate.Volume) error {
	s.note("stage")
	s.mu.Lock()
	s.tenants = append(s.tenants, req.Tenant)
	entered, block := s.entered, s.block
	s.entered, s.block = nil, nil // only the first stage waits
	s.mu.Unlock()
	if entered != nil {
		entered <- struct{}{}
		<-block
	}
	if s.stageErr != nil {
		return s.stageErr
	}
	m := mountpoint.Info{FSType: fuseType, Source: req.Handle.Bucket, ReadOnly: req.Flags.ReadOnly}
	if s.copyLike {
		m.FSType, m.Major, m.Minor, m.Root = "ext4", 8, 1, "/copies/"+req.VolumeID
	}
	s.mounts.mount(req.StagingPath, m)
	s.mu.Lock()
	delete(s.dead, req.VolumeID)
	s.mu.Unlock()
	return nil
}

func (s *fakeStager) Unstage(ctx context.Context, rec *nodestate.Volume) (stage.Unstaged, error) {
	s.note("unstage")
	did := stage.Unstaged{Flush: s.flush}
	if s.unstageErr != nil {
		return did, s.unstageErr
	}
	return did, s.mounts.Unmount(rec.StagingPath)
}

func (s *fakeStager) DiscardFailed() bool { return s.discard }

func (s *fakeStager) Release(ctx context.Context, rec *nodestate.Volume) error {
	s.note("release")
	return s.mounts.Unmount(rec.StagingPath)
}

func (s *fakeStager) Healthy(rec *nodestate.Volume) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.dead[rec.VolumeID] && s.mounts.has(rec.StagingPath)
}

func (s *fakeStager) Check(ctx context.Context, rec *nodestate.Volume) []stage.Condition {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conditions
}

// kill makes the volume's server die (its mount stays, broken).
func (s *fakeStager) kill(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dead[id] = true
}

// repairingStager is a fakeStager that restarts a dead server in place
// (stage.Repairer), as stage.Mount does.
type repairingStager struct{ *fakeStager }

func (s repairingStager) Repair(ctx context.Context, rec *nodestate.Volume) error {
	s.note("repair")
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.dead, rec.VolumeID)
	return nil
}

// gateStore wraps a store: when fail is set every bucket call answers it
// (a store that is down); when entered and block are set, the first
// bucket call signals entered and waits for block to close.
type gateStore struct {
	store.Store
	g *gate
}

type gate struct {
	mu      sync.Mutex
	fail    error
	entered chan struct{}
	block   chan struct{}
}

func (g *gate) check() error {
	g.mu.Lock()
	fail, entered, block := g.fail, g.entered, g.block
	g.entered, g.block = nil, nil // only the first call waits
	g.mu.Unlock()
	if entered != nil {
		entered <- struct{}{}
		<-block
	}
	return fail
}

func (s gateStore) HeadBucket(ctx context.Context, b string) error {
	if err := s.g.check(); err != nil {
		return err
	}
	return s.Store.HeadBucket(ctx, b)
}

func (s gateStore) CreateBucket(ctx context.Context, b string) error {
	if err := s.g.check(); err != nil {
		return err
	}
	return s.Store.CreateBucket(ctx, b)
}

// The in-memory account's key: volumes without a secret use it as the
// driver's ambient identity; secretKey is the one secret key the test
// store reads.
const (
	ambientKey = "ambient"
	secretKey  = "key"
)

// env is one driver with both services over the fakes.
type env struct {
	t       *testing.T
	d       *Driver
	cfg     Config
	mem     *memstore.Server
	gate    *gate
	mounts  *fakeMounts
	stagers map[volume.Mode]*fakeStager
	root    string
	// lastID is the volume a test created last (see staticPVs).
	lastID string
	// marker signs the marks of Ownership.
	marker *bucket.Marker
}

// newEnv builds a driver; edit adjusts its Config before New.
func newEnv(t *testing.T, edit ...func(*Config)) *env {
	t.Helper()
	e := &env{t: t, mem: memstore.New(ambientKey), gate: &gate{}, mounts: newFakeMounts(), root: t.TempDir()}
	reg := store.Registry{"s3": store.Backend{
		Open: func(sec store.Secrets, _ string) (store.Store, error) {
			key := sec[secretKey]
			if key == "" {
				key = ambientKey
			}
			return gateStore{Store: e.mem.Open(key), g: e.gate}, nil
		},
		SecretKeys: []string{secretKey},
	}}
	marker, err := bucket.NewMarker(bucket.NewKey())
	if err != nil {
		t.Fatal(err)
	}
	e.marker = marker
	e.stagers = map[volume.Mode]*fakeStager{}
	stagers := map[volume.Mode]stage.Stager{}
	for _, m := range []volume.Mode{volume.ModeMount, volume.ModeMountCached} {
		e.stagers[m] = newFakeStager(e.mounts)
		stagers[m] = e.stagers[m]
	}
	// MOUNT restarts a dead server in place and discards a failed
	// stage's state; MOUNT_CACHED flushes on unstage.
	e.stagers[volume.ModeMount].discard = true
	e.stagers[volume.ModeMountCached].flush = true
	stagers[volume.ModeMount] = repairingStager{e.stagers[volume.ModeMount]}
	e.cfg = Config{
		Version: "test", NodeID: "node-1", Controller: true, Node: true,
		Defaults:  volume.Defaults{Store: "s3", Stores: []string{"s3"}, Kinds: stores.Catalog()},
		Stores:    reg,
		Ownership: bucket.NewKeeper(marker, nil),
		State:     nodestate.Dir{Root: filepath.Join(e.root, "state")},
		Mounts:    e.mounts,
		Stagers:   stagers,
		Inline:    InlinePolicy{Stores: []string{"s3"}},
		Log:       slog.New(slog.DiscardHandler),
	}
	for _, f := range edit {
		f(&e.cfg)
	}
	e.d = New(e.cfg)
	return e
}

// bucket creates a bucket in the in-memory account.
func (e *env) bucket(name string) {
	e.t.Helper()
	if err := e.mem.Open(ambientKey).CreateBucket(context.Background(), name); err != nil {
		e.t.Fatal(err)
	}
}

// sourceID is the volume ID of a volume on the existing bucket b in mode.
func (e *env) sourceID(b string, mode volume.Mode) string {
	return e.volumeID(b, map[string]string{volume.KeySource: "s3://" + b, volume.KeyMode: string(mode)})
}

// managedID is the ID of a managed volume on bucket b that was never
// created.
func (e *env) managedID(b string) string {
	return e.volumeID(b, map[string]string{volume.KeyName: b})
}

// volumeID is the ID the controller would issue for attrs, as PV "pv-"+b.
func (e *env) volumeID(b string, attrs map[string]string) string {
	e.t.Helper()
	spec, err := volume.Parse(attrs, e.cfg.Defaults, "")
	if err != nil {
		e.t.Fatal(err)
	}
	id, err := volume.Handle{Spec: spec, NameHash: volume.NameHash("pv-" + b)}.ID()
	if err != nil {
		e.t.Fatal(err)
	}
	return id
}

// path is a path under the test's directory.
func (e *env) path(p ...string) string {
	return filepath.Join(append([]string{e.root}, p...)...)
}

// mountCap is a mount capability with access mode m and mount flags.
func mountCap(m csi.VolumeCapability_AccessMode_Mode, flags ...string) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{MountFlags: flags}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: m},
	}
}

// rwx is the capability most tests use.
func rwx() *csi.VolumeCapability {
	return mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)
}

// blockCap is a block capability, which the driver refuses.
func blockCap() *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
}

// code is the gRPC code a handler's error leaves with (through toStatus,
// as the gRPC server's interceptor converts it).
func code(err error) codes.Code { return status.Code(toStatus(err)) }

// wantCode fails the test unless err leaves with want.
func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if got := code(err); got != want {
		t.Fatalf("%s: code %v (%v), want %v", what, got, err, want)
	}
}
