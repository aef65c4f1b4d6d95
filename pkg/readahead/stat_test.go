package readahead

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rclone/rclone/backend/oracleobjectstorage"
	"github.com/rclone/rclone/backend/s3"
	"github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/hash"
	"github.com/rclone/rclone/fs/object"
)

// headFs lists objects as an S3 backend does: a listed object knows its
// size and hash, and reads its mtime with a request of its own (a HEAD:
// counted, headDelay long, its concurrency recorded) the first time it is
// asked, which also refreshes its size and hash. gate, when set, holds
// every HEAD but those of d/f00 and d/f01 until it is closed.
type headFs struct {
	fs.Fs
	headDelay        time.Duration
	gate             chan struct{}
	heads, reads     atomic.Int64
	inFlight, maxFly atomic.Int64
	// store guards the memory backend's objects, which share their data
	// with each other (a real store's are apart, behind HTTP).
	store sync.Mutex
}

// headObj is a listed object of a headFs. Like rclone's S3 object, a
// read (Open) refreshes what a HEAD reads, with no HEAD of its own.
type headObj struct {
	fs.Object // the memory backend's, for everything else
	h         *headFs
	mu        sync.Mutex // guards the fields below, which a read sets
	loaded    bool       // the HEAD (or a read) was made
	size      int64
	md5       string
	mtime     time.Time
}

func (h *headFs) List(ctx context.Context, dir string) (fs.DirEntries, error) {
	entries, err := h.Fs.List(ctx, dir)
	for i, e := range entries {
		if o, ok := e.(fs.Object); ok {
			sum, _ := o.Hash(ctx, hash.MD5)
			entries[i] = &headObj{Object: o, h: h, size: o.Size(), md5: sum}
		}
	}
	return entries, err
}

func (o *headObj) head(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.loaded {
		return nil
	}
	o.h.heads.Add(1)
	n := o.h.inFlight.Add(1)
	defer o.h.inFlight.Add(-1)
	for m := o.h.maxFly.Load(); n > m && !o.h.maxFly.CompareAndSwap(m, n); m = o.h.maxFly.Load() {
	}
	if o.h.gate != nil && o.Remote() >= "d/f02" {
		<-o.h.gate
	}
	time.Sleep(o.h.headDelay)
	o.h.store.Lock()
	defer o.h.store.Unlock()
	cur, err := o.h.Fs.NewObject(ctx, o.Remote())
	if err != nil {
		return err
	}
	o.load(ctx, cur)
	return nil
}

// load takes what the store says of the object; call with o.mu held.
func (o *headObj) load(ctx context.Context, cur fs.Object) {
	o.size, o.mtime, o.loaded = cur.Size(), cur.ModTime(ctx), true
	o.md5, _ = cur.Hash(ctx, hash.MD5)
}

// Open reads the object, taking its size, mtime and hash from the answer
// as rclone's S3 object does from a GET's headers (no HEAD counted).
func (o *headObj) Open(ctx context.Context, options ...fs.OpenOption) (io.ReadCloser, error) {
	o.h.reads.Add(1)
	// head takes o.mu, then the store's lock: so does this.
	o.mu.Lock()
	defer o.mu.Unlock()
	o.h.store.Lock()
	defer o.h.store.Unlock()
	cur, err := o.h.Fs.NewObject(ctx, o.Remote())
	if err != nil {
		return nil, err
	}
	o.load(ctx, cur)
	rc, err := cur.Open(ctx, options...)
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(rc) // no lock is held past Open
	rc.Close()
	return io.NopCloser(bytes.NewReader(data)), err
}

func (o *headObj) ModTime(ctx context.Context) time.Time {
	if o.head(ctx) != nil {
		return time.Now()
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.mtime
}

func (o *headObj) Metadata(ctx context.Context) (fs.Metadata, error) {
	return fs.Metadata{}, o.head(ctx)
}

func (o *headObj) Size() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.size
}

func (o *headObj) Hash(_ context.Context, t hash.Type) (string, error) {
	if t != hash.MD5 {
		return "", hash.ErrUnsupported
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.md5, nil
}

func (o *headObj) SetModTime(ctx context.Context, t time.Time) error {
	o.mu.Lock()
	o.loaded = false
	o.mu.Unlock()
	o.h.store.Lock()
	defer o.h.store.Unlock()
	return o.Object.SetModTime(ctx, t)
}

func (o *headObj) Update(ctx context.Context, in io.Reader, src fs.ObjectInfo, options ...fs.OpenOption) error {
	o.mu.Lock()
	o.loaded = false
	o.mu.Unlock()
	o.h.store.Lock()
	err := o.Object.Update(ctx, in, src, options...)
	o.h.store.Unlock()
	if err != nil {
		return err
	}
	return o.head(ctx)
}

// headWrap wraps h with StatAhead on, twinning its objects.
func headWrap(h *headFs) *Fs {
	w := Wrap(h, Options{StatAhead: true})
	w.stat.twinnable = func(o fs.Object) bool { _, ok := o.(*headObj); return ok }
	return w
}

// mtimeFs is rclone's in-memory backend holding n files d/fNN whose
// mtimes are base plus NN hours, listed by a headFs.
func mtimeFs(t *testing.T, n int, base time.Time) *headFs {
	t.Helper()
	f := memoryFs(t, 0)
	for i := range n {
		put(t, f, fmt.Sprintf("d/f%02d", i), content(i), base.Add(time.Duration(i)*time.Hour))
	}
	return &headFs{Fs: f, headDelay: 5 * time.Millisecond}
}

func put(t *testing.T, f fs.Fs, remote string, data []byte, mtime time.Time) {
	t.Helper()
	if _, err := f.Put(context.Background(), bytes.NewReader(data), object.NewStaticObjectInfo(remote, mtime, int64(len(data)), true, nil, f)); err != nil {
		t.Fatal(err)
	}
}

// TestStatAheadInNameOrder: stats in name order are answered with mtimes
// looked up ahead, several at a time, each one right, with no more
// requests than the stats alone make; only the first two stats (no order
// yet) ask the listed objects, and those that find their lookup still
// queued.
func TestStatAheadInNameOrder(t *testing.T) {
	base := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	h := mtimeFs(t, 40, base)
	w := headWrap(h)
	objs := listed(t, w)
	for i, o := range objs[:40] {
		want := base.Add(time.Duration(i) * time.Hour)
		if got := o.ModTime(context.Background()); !got.Equal(want) {
			t.Fatalf("%s: mtime %v, want %v", o.Remote(), got, want)
		}
	}
	objs[40].ModTime(context.Background()) // d/zz-large, looked up too
	// Statting them again asks nobody.
	for _, o := range objs {
		o.ModTime(context.Background())
	}
	if n := h.heads.Load(); n != 41 {
		t.Fatalf("%d HEADs for 41 objects, want 41", n)
	}
	if m := h.maxFly.Load(); m < 2 || m > statFetches+1 {
		t.Fatalf("at most %d HEADs at once, want 2 to %d", m, statFetches+1)
	}
	// The listed objects rclone holds were not touched but by their own
	// stats: the first two, and any whose lookup was still queued when
	// the stat came (it asks its own object rather than wait for a slot).
	own := 0
	for i, o := range objs {
		if o.Object.(*headObj).loaded {
			own++
		} else if i < 2 {
			t.Fatalf("%s: the listed object made no HEAD", o.Remote())
		}
	}
	if hits := w.Hits().MTimeHits; hits != int64(2*(41-own)) || own > 11 {
		t.Fatalf("%d stats answered from lookups ahead and %d objects asked themselves; want %d and at most 11", hits, own, 2*(41-own))
	}
}

// TestStatAheadEmptyFilesFirst: a directory whose first files are empty
// (an __init__.py) is read as if a reader might be at work while the stats
// are among them or at the first file with bytes, since rclone's cache
// never opens an empty file: the small files after it are left to a
// reader's prefetch, but the first file with bytes, which nothing fetches
// before an open, is looked up. An `ls -l` there gets its lookups from the
// stat after that file on, and waits about one round trip more than in a
// directory with bytes first (the file after it makes its own HEAD).
// (Before, a reader of such a directory made a HEAD per file.)
func TestStatAheadEmptyFilesFirst(t *testing.T) {
	h := mtimeFs(t, 40, time.Now())
	put(t, h.Fs, "d/_a-empty", nil, time.Now())
	put(t, h.Fs, "d/_b-empty", nil, time.Now())
	w := headWrap(h)
	objs := listed(t, w) // _a-empty, _b-empty, f00, f01, ...
	objs[0].ModTime(context.Background())
	objs[0].ModTime(context.Background()) // a second stat of it is still a reader's
	objs[1].ModTime(context.Background())
	if objs[2].mtime.Load() == nil {
		t.Fatal("the first file with bytes was not looked up ahead")
	}
	if objs[3].mtime.Load() != nil {
		t.Fatal("a small file after the first one with bytes was looked up while a reader may be at work")
	}
	objs[2].ModTime(context.Background())
	objs[3].ModTime(context.Background())
	for _, o := range objs[4:] {
		if o.mtime.Load() == nil {
			t.Fatalf("%s not looked up ahead: stats past the first file with bytes, and no open", o.Remote())
		}
	}
	for _, o := range objs[4:] {
		o.ModTime(context.Background())
	}
	n, hits, fly := h.heads.Load(), w.Hits().MTimeHits, h.maxFly.Load()
	t.Logf("%d HEADs (at most %d at once), %d stats from lookups", n, fly, hits)
	if n != int64(len(objs)) || fly < 2 || hits < 30 {
		t.Fatalf("stats in order of %d objects, 2 empty ones first: %d HEADs (at most %d at once), %d stats from lookups; want %d, several at once, 30 or more from lookups", len(objs), n, fly, hits, len(objs))
	}
}

// TestStatAheadOnlyInOrder: stats in a random order look nothing up, and
// files they asked are not looked up by a later pass in order; with
// StatAhead off, or for objects that cannot be twinned, nothing is looked
// up either.
func TestStatAheadOnlyInOrder(t *testing.T) {
	h := mtimeFs(t, 20, time.Now())
	w := headWrap(h)
	objs := listed(t, w)
	for _, i := range []int{7, 3, 12, 0, 18, 5} {
		objs[i].ModTime(context.Background())
	}
	if n := h.heads.Load(); n != 6 {
		t.Fatalf("a random order of 6 stats made %d HEADs", n)
	}
	// A pass in name order afterwards looks up only the files no stat
	// asked yet: one HEAD per file in all.
	for _, o := range objs {
		o.ModTime(context.Background())
	}
	if n := h.heads.Load(); n != 21 {
		t.Fatalf("%d HEADs for 21 files after a random order and a pass in order, want 21", n)
	}
	for _, wrap := range []func(*headFs) *Fs{
		func(h *headFs) *Fs { return Wrap(h, Options{}) },
		func(h *headFs) *Fs { return Wrap(h, Options{StatAhead: true}) }, // headObj is no backend's object
	} {
		h = mtimeFs(t, 20, time.Now())
		w = wrap(h)
		for _, o := range listed(t, w) {
			o.ModTime(context.Background())
		}
		if n, hits := h.heads.Load(), w.Hits().MTimeHits; n != 21 || hits != 0 || h.maxFly.Load() != 1 {
			t.Fatalf("%d HEADs (at most %d at once) and %d stats from lookups, want 21, 1 and 0", n, h.maxFly.Load(), hits)
		}
	}
}

// TestStatAheadNotForReads: a reader of files in name order stats each
// file before it reads it. Small files the prefetch fetches get their
// mtimes from its GETs (the stat of a file read or fetched costs no
// request), so they are not looked up: lookups there made a HEAD per file
// that no stat needed and read 1,250 small files 25-35% slower with the
// store on loopback (docs/benchmarks.md), also when the reader began with
// a large file. Files the prefetch leaves (larger than SmallMax, here all
// with SmallMax 1, or every file when it may hold no memory) are statted
// before their GET, so they are looked up ahead, still one HEAD per file
// but not one after another. (The 41st HEAD is d/zz-large's, looked up
// and not read.)
func TestStatAheadNotForReads(t *testing.T) {
	for _, tc := range []struct {
		name       string
		opt        Options
		largeFirst bool     // d/a-large, 300 KiB, sorts first
		empty      []string // empty files, statted, never opened (as rclone's cache does)
		closeStat  bool     // files are statted again two at a time, after a later open
		maxHeads   int64
		lookedUp   bool // most stats answered from lookups, HEADs at once
	}{
		{"small files, prefetched", Options{StatAhead: true, SmallFilesOnly: true}, false, nil, false, 10, false},
		{"a large file, then small ones", Options{StatAhead: true, SmallFilesOnly: true}, true, nil, false, 10, false},
		{"an empty file among them", Options{StatAhead: true, SmallFilesOnly: true}, false, []string{"d/f05-empty"}, false, 10, false},
		{"empty files first", Options{StatAhead: true, SmallFilesOnly: true}, false, []string{"d/_a-empty", "d/_b-empty"}, false, 10, false},
		{"two empty files among them", Options{StatAhead: true, SmallFilesOnly: true}, false, []string{"d/f05-empty", "d/f05-empty2"}, false, 10, false},
		// rclone's cache stats a file again when it lets it go, in its
		// release, which the kernel sends once the reader has moved on.
		{"files statted again at their release", Options{StatAhead: true, SmallFilesOnly: true}, false, nil, true, 10, false},
		{"files above SmallMax", Options{StatAhead: true, SmallMax: 1}, false, nil, false, 42, true},
		{"no prefetch", Options{StatAhead: true, SmallMax: -1}, false, nil, false, 42, true},
		{"no memory for the prefetch", Options{StatAhead: true, MemoryLimit: -1}, false, nil, false, 42, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := mtimeFs(t, 40, time.Now())
			if tc.largeFirst {
				put(t, h.Fs, "d/a-large", bytes.Repeat([]byte("L"), 300<<10), time.Now())
			}
			for _, name := range tc.empty {
				put(t, h.Fs, name, nil, time.Now())
			}
			w := Wrap(h, tc.opt)
			w.stat.twinnable = func(o fs.Object) bool { _, ok := o.(*headObj); return ok }
			objs := listed(t, w)[:40]
			for i, o := range objs {
				o.ModTime(context.Background())
				if o.Size() == 0 {
					continue
				}
				rc, err := o.Open(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if tc.closeStat && i >= 2 && i%2 == 0 {
					objs[i-2].ModTime(context.Background())
					objs[i-1].ModTime(context.Background())
					for _, x := range objs[i+1:] {
						if x.mtime.Load() != nil {
							t.Fatalf("statting %s and %s again after %s was opened started lookups ahead (%s): they are not an `ls -l`", objs[i-2].Remote(), objs[i-1].Remote(), o.Remote(), x.Remote())
						}
					}
				}
				if _, err := io.Copy(io.Discard, rc); err != nil {
					t.Fatal(err)
				}
				rc.Close()
			}
			n, hits, fly := h.heads.Load(), w.Hits().MTimeHits, h.maxFly.Load()
			// Lookups started for files with bytes (a queued one the
			// prefetch overtook is dropped, so HEADs alone would hide them).
			started := 0
			for _, o := range objs {
				if o.Size() > 0 && o.mtime.Load() != nil {
					started++
				}
			}
			t.Logf("%d HEADs (at most %d at once), %d GETs, %d stats from lookups, %d lookups of files with bytes started", n, fly, h.reads.Load(), hits, started)
			if !tc.lookedUp && started > 1 {
				t.Fatalf("reading 40 files in order, each statted first: %d lookups of files with bytes started, want at most 1 (the first file with bytes after empty ones)", started)
			}
			// A stat's own HEAD may run beside statFetches lookups; an
			// empty file, whose mtime no GET brings, may be looked up.
			if n > tc.maxHeads || fly > statFetches+1 || (hits >= 30) != tc.lookedUp || tc.lookedUp && fly == 1 || !tc.lookedUp && hits > int64(len(tc.empty)) {
				t.Fatalf("reading 40 files in order, each statted first: %d HEADs (at most %d at once), %d stats from lookups; want at most %d HEADs, lookups used (30 or more, and HEADs at once): %v",
					n, fly, hits, tc.maxHeads, tc.lookedUp)
			}
		})
	}
}

// TestStatAheadAfterAPartialRead: files a reader left to the small-file
// prefetch stay due for lookups: stats in name order after the reader
// stopped (an `ls -l` after reading the first 3 of 100 files, which the
// prefetch followed with the next 32) look the rest up ahead, several at
// once. Before, the files skipped while the reader read were passed for
// good, and each of them waited for its own HEAD.
func TestStatAheadAfterAPartialRead(t *testing.T) {
	h := mtimeFs(t, 100, time.Now())
	w := Wrap(h, Options{StatAhead: true, SmallFilesOnly: true})
	w.stat.twinnable = func(o fs.Object) bool { _, ok := o.(*headObj); return ok }
	objs := listed(t, w)
	for _, o := range objs[:3] {
		o.ModTime(context.Background())
		readObject(t, o)
	}
	for _, o := range objs[:100] {
		o.ModTime(context.Background())
	}
	n, hits, fly := h.heads.Load(), w.Hits().MTimeHits, h.maxFly.Load()
	t.Logf("%d HEADs (at most %d at once), %d stats from lookups", n, fly, hits)
	if hits < 55 || fly < 2 || n > 102 {
		t.Fatalf("stats in order after 3 files read: %d HEADs (at most %d at once), %d stats from lookups; want at most 102, several at once, 55 or more from lookups", n, fly, hits)
	}
}

// TestStatAheadSeesTheObjectAsTheStatDoes: an object replaced after the
// listing (here larger, with another mtime) shows, once a stat was
// answered from its lookup, the mtime, size and hash the lookup found, as
// the listed object would after its own HEAD; a new mtime or an upload
// through the object drops its lookup.
func TestStatAheadSeesTheObjectAsTheStatDoes(t *testing.T) {
	base := time.Date(2021, 5, 6, 7, 8, 9, 0, time.UTC)
	h := mtimeFs(t, 10, base)
	w := headWrap(h)
	objs := listed(t, w)
	later := base.Add(1000 * time.Hour)
	bigger := bytes.Repeat([]byte("x"), 1000)
	h.store.Lock()
	put(t, h.Fs, "d/f05", bigger, later)
	h.store.Unlock()
	for i := range 5 {
		objs[i].ModTime(context.Background())
	}
	if got := objs[5].ModTime(context.Background()); !got.Equal(later) {
		t.Fatalf("f05 replaced: mtime %v, want %v", got, later)
	}
	sum, _ := objs[5].Hash(context.Background(), hash.MD5)
	want, _ := hash.NewMultiHasherTypes(hash.NewHashSet(hash.MD5))
	_, _ = want.Write(bigger)
	if objs[5].Size() != int64(len(bigger)) || sum != want.Sums()[hash.MD5] {
		t.Fatalf("f05 replaced: size %d, md5 %s; want the new object's %d, %s", objs[5].Size(), sum, len(bigger), want.Sums()[hash.MD5])
	}
	// f06 was looked up ahead; a new mtime set through it drops that.
	if objs[6].mtime.Load() == nil {
		t.Fatal("f06 was not looked up ahead")
	}
	set := base.Add(-time.Hour)
	if err := objs[6].SetModTime(context.Background(), set); err != nil {
		t.Fatal(err)
	}
	if objs[6].mtime.Load() != nil {
		t.Fatal("SetModTime kept the lookup")
	}
	if got := objs[6].ModTime(context.Background()); !got.Equal(set) {
		t.Fatalf("f06 after SetModTime: %v, want %v", got, set)
	}
	// An upload onto f07, after a stat was answered from its lookup,
	// drops it: size and mtime are the upload's.
	objs[7].ModTime(context.Background())
	if err := objs[7].Update(context.Background(), bytes.NewReader(bigger), object.NewStaticObjectInfo("d/f07", later, int64(len(bigger)), true, nil, h.Fs)); err != nil {
		t.Fatal(err)
	}
	if got := objs[7].ModTime(context.Background()); !got.Equal(later) || objs[7].Size() != int64(len(bigger)) {
		t.Fatalf("f07 after an upload: mtime %v, size %d; want %v, %d", got, objs[7].Size(), later, len(bigger))
	}
}

// TestStatAheadDoesNotQueueAStat: a stat whose lookup is still queued
// behind statFetches others asks its own object at once instead of
// waiting for a slot, and the lookup is not made.
func TestStatAheadDoesNotQueueAStat(t *testing.T) {
	h := mtimeFs(t, 60, time.Now())
	h.gate = make(chan struct{})
	w := headWrap(h)
	objs := listed(t, w)
	// Two stats in order start lookups of f02 to f60 (the listing has
	// 61 objects), held by the gate.
	objs[0].ModTime(context.Background())
	objs[1].ModTime(context.Background())
	for deadline := time.Now().Add(10 * time.Second); h.inFlight.Load() < statFetches; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d lookups running, want %d", h.inFlight.Load(), statFetches)
		}
	}
	// A queued one's stat makes its own HEAD (held by the gate like the
	// running lookups), and its lookup is abandoned.
	q := -1
	for i := 2; i < len(objs) && q < 0; i++ {
		if e := objs[i].mtime.Load(); e != nil && e.state.Load() == lookupQueued {
			q = i
		}
	}
	if q < 0 {
		t.Fatal("no lookup is queued")
	}
	done := make(chan time.Time)
	go func() { done <- objs[q].ModTime(context.Background()) }()
	for deadline := time.Now().Add(10 * time.Second); h.inFlight.Load() < statFetches+1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the stat of a queued object did not ask its own object")
		}
	}
	close(h.gate)
	<-done
	for deadline := time.Now().Add(10 * time.Second); h.inFlight.Load() > 0 || h.heads.Load() < 61; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			break
		}
	}
	time.Sleep(50 * time.Millisecond)
	// 2 stats, 58 lookups (all but the abandoned one) and its stat's own
	// HEAD.
	if n := h.heads.Load(); n != 61 {
		t.Fatalf("%d HEADs, want 61 (%s's lookup abandoned)", n, objs[q].Remote())
	}
}

// TestTwinnableBackends: only the objects of rclone's s3 and
// oracleobjectstorage backends are twinned.
func TestTwinnableBackends(t *testing.T) {
	for _, tc := range []struct {
		o    fs.Object
		want bool
	}{
		{&s3.Object{}, true},
		{&oracleobjectstorage.Object{}, true},
		{&headObj{}, false},
		{listedMemoryObject(t), false},
		{nil, false},
	} {
		if got := twinnableBackend(tc.o); got != tc.want {
			t.Errorf("%T: twinnable %v, want %v", tc.o, got, tc.want)
		}
	}
}

func listedMemoryObject(t *testing.T) fs.Object {
	entries, err := memoryFs(t, 1).List(context.Background(), "d")
	if err != nil || len(entries) == 0 {
		t.Fatal(err)
	}
	return entries[0].(fs.Object)
}
