package fuseserver

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// scriptedWrites answers its Write calls from a script, one status each
// (the last one repeated), and counts them.
type scriptedWrites struct {
	fuse.RawFileSystem
	script []fuse.Status
	calls  atomic.Int32
}

func (s *scriptedWrites) Write(_ <-chan struct{}, _ *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	i := min(int(s.calls.Add(1))-1, len(s.script)-1)
	return uint32(len(data)), s.script[i]
}

// fakeDisk is a statfs whose free bytes a test sets (4 KiB blocks, inodes
// to spare).
type fakeDisk struct{ free atomic.Int64 }

func (d *fakeDisk) statfs(_ string, s *unix.Statfs_t) error {
	*s = unix.Statfs_t{Bsize: 4096, Bavail: uint64(d.free.Load() / 4096), Files: 1000, Ffree: 1000}
	return nil
}

// TestFullCacheWrites pins fullFS.Write's contract: an EIO of a full cache
// waits for room and becomes ENOSPC, a write with room is tried once more,
// a signal during the wait answers EINTR at once (Go's runtime signals its
// threads for its own ends; an ENOSPC then told a writer the cache was
// full while rclone might still have made room), and any other answer
// passes through.
func TestFullCacheWrites(t *testing.T) {
	const wait = time.Second
	cases := []struct {
		name      string
		script    []fuse.Status
		free      int64         // bytes free at first
		freeAfter time.Duration // then 64 MiB free after this long (0: never)
		interrupt time.Duration // the caller's signal after this long (0: none)
		want      fuse.Status
		calls     int32
		atLeast   time.Duration // the answer came no sooner
		before    time.Duration // and sooner than this
	}{
		{name: "full, no room comes", script: []fuse.Status{fuse.EIO}, want: fuse.Status(unix.ENOSPC), calls: 1,
			atLeast: wait, before: 5 * wait},
		{name: "full, signal while waiting", script: []fuse.Status{fuse.EIO}, interrupt: 50 * time.Millisecond,
			want: fuse.EINTR, calls: 1, atLeast: 50 * time.Millisecond, before: wait},
		{name: "full, room comes", script: []fuse.Status{fuse.EIO, fuse.OK}, freeAfter: 150 * time.Millisecond,
			want: fuse.OK, calls: 2, atLeast: 150 * time.Millisecond, before: wait},
		{name: "full, room comes, still refused", script: []fuse.Status{fuse.EIO}, freeAfter: 150 * time.Millisecond,
			want: fuse.EIO, calls: 2, atLeast: 150 * time.Millisecond, before: wait},
		{name: "EIO with room", script: []fuse.Status{fuse.EIO}, free: 64 << 20, want: fuse.EIO, calls: 1,
			before: wait},
		{name: "other errors pass", script: []fuse.Status{fuse.EPERM}, want: fuse.EPERM, calls: 1, before: wait},
		{name: "written", script: []fuse.Status{fuse.OK}, want: fuse.OK, calls: 1, before: wait},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inner := &scriptedWrites{script: tc.script}
			disk := &fakeDisk{}
			disk.free.Store(tc.free)
			f := newFullFS(inner, "/cache", wait)
			f.statfs = disk.statfs
			start := time.Now() // before the timers: took is never short
			if tc.freeAfter > 0 {
				tm := time.AfterFunc(tc.freeAfter, func() { disk.free.Store(64 << 20) })
				defer tm.Stop()
			}
			cancel := make(chan struct{})
			if tc.interrupt > 0 {
				tm := time.AfterFunc(tc.interrupt, func() { close(cancel) })
				defer tm.Stop()
			}
			_, st := f.Write(cancel, &fuse.WriteIn{}, make([]byte, 4096))
			took := time.Since(start)
			if st != tc.want {
				t.Errorf("status %v, want %v", st, tc.want)
			}
			if got := inner.calls.Load(); got != tc.calls {
				t.Errorf("%d writes reached rclone, want %d", got, tc.calls)
			}
			if took < tc.atLeast || took >= tc.before {
				t.Errorf("answered after %v, want from %v to under %v", took, tc.atLeast, tc.before)
			}
		})
	}
}
