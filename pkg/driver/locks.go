package driver

import (
	"fmt"
	"sync"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
)

// keyLocks serialises calls per key (volume ID or name). A second call on a
// key that is in use fails at once with fault.Busy (gRPC Aborted), which the
// CO retries: a call never waits behind a slow one past its own deadline.
type keyLocks struct {
	mu   sync.Mutex
	held map[string]bool
}

func newKeyLocks() *keyLocks { return &keyLocks{held: map[string]bool{}} }

// acquire takes key or returns fault.Busy; call the returned func to release.
func (l *keyLocks) acquire(key string) (func(), error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held[key] {
		return nil, fmt.Errorf("%w: another operation on %q is still running", fault.Busy, key)
	}
	l.held[key] = true
	return func() {
		l.mu.Lock()
		delete(l.held, key)
		l.mu.Unlock()
	}, nil
}
