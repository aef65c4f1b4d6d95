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

// getIf is get for an entry already there; nil (and no use counted) when
// there is none.
func (t *nodeTable[T]) getIf(id uint64) *T {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.nodes[id]
	if e == nil {
		return nil
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

// nodeRef is an entry of a nodeTable snapshot.
type nodeRef[T any] struct {
	id uint64
	v  *T
}

// snapshot lists the entries there now. An entry may be dropped after:
// what it holds is then what idle allowed to drop.
func (t *nodeTable[T]) snapshot() []nodeRef[T] {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]nodeRef[T], 0, len(t.nodes))
	for id, e := range t.nodes {
		out = append(out, nodeRef[T]{id, &e.v})
	}
	return out
}
