package fuseserver

import "sync"

// nodeTable holds one entry per kernel node while calls use it: get makes
// the entry (the zero T) or returns the one there and counts a use; put
// ends that use and drops the entry once no call uses it and idle says
// nothing else is kept in it. The zero value is ready to use. What T holds
// is guarded by the caller (a mutex inside T); the table guards only its
// map and counts.
type nodeTable[T any] struct {
	mu    sync.Mutex
	nodes map[uint64]*nodeEntry[T]
}

type nodeEntry[T any] struct {
	v    T
	uses int
}

func (t *nodeTable[T]) get(id uint64) *T {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.nodes[id]
	if e == nil {
		if t.nodes == nil {
			t.nodes = map[uint64]*nodeEntry[T]{}
		}
		e = &nodeEntry[T]{}
		t.nodes[id] = e
	}
	e.uses++
	return &e.v
}

// put ends a use of id's entry begun by get; idle (nil: always true) is
// called under the table's lock with the entry's value.
func (t *nodeTable[T]) put(id uint64, idle func(*T) bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.nodes[id]
	if e.uses--; e.uses == 0 && (idle == nil || idle(&e.v)) {
		delete(t.nodes, id)
	}
}
