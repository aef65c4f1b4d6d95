package fuseserver

import (
	"sync"
	"time"
)

// stuckFiles tracks the files of a MOUNT_CACHED volume whose acknowledged
// writes are neither uploaded nor queued for upload. rclone's close of a
// file only partly cached first fetches the ranges it lacks; when the
// store does not answer, the close returns before queueing the file, the
// file stays dirty in the cache (so nothing is lost and the VFS reads as
// busy), and nothing retries that close while the server runs. A new
// server queues every dirty file of the cache when it starts; so a file
// stuck for longer than after is counted in the status (Stuck), and the
// volume's unstage restarts the server (stage.Cached.flushAndStop).
//
// A file being written is dirty and unqueued too: it may be counted, and
// the restart then waits, because the unmount of a mount with open files
// is refused.
type stuckFiles struct {
	after time.Duration

	mu    sync.Mutex
	since map[string]time.Time // name -> first seen dirty and unqueued
}

func newStuckFiles(after time.Duration) *stuckFiles {
	return &stuckFiles{after: after, since: map[string]time.Time{}}
}

// update takes the journal's names at now: those not queued and dirty
// are stuck since they were first seen so; the others are not.
func (s *stuckFiles) update(names []string, queued map[string]bool, dirty func(name string) bool, now time.Time) {
	still := make(map[string]time.Time, len(names))
	s.mu.Lock()
	old := s.since
	s.mu.Unlock()
	for _, name := range names {
		if queued[name] || !dirty(name) {
			continue
		}
		if t, ok := old[name]; ok {
			still[name] = t
		} else {
			still[name] = now
		}
	}
	s.mu.Lock()
	s.since = still
	s.mu.Unlock()
}

// count is the number of files stuck for longer than after at now.
func (s *stuckFiles) count(now time.Time) int {
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, t := range s.since {
		if now.Sub(t) > s.after {
			n++
		}
	}
	return n
}
