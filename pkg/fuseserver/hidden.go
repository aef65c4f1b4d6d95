package fuseserver

import (
	"sync"
	"sync/atomic"
)

// hiddenKeys are the keys the VFS's listings must not show: those of files
// written through passthrough (passthrough_writer.go). An object there (the
// writer's own fsync put, or one written outside) would end the VFS's
// virtual entry of the file, and with it the one node the kernel has for
// it, and give rclone's cache item an object to fetch from. A node's key
// is its path now, read from the path table, so it follows renames.
type hiddenKeys struct {
	n     atomic.Int32
	paths atomic.Pointer[pathTable]

	mu    sync.Mutex
	nodes map[uint64]bool
}

// hide reports whether remote is the path of a node hidden now; it is a
// keyfilter hide function.
func (h *hiddenKeys) hide(remote string) bool {
	if h.n.Load() == 0 {
		return false
	}
	paths := h.paths.Load()
	if paths == nil {
		return false
	}
	h.mu.Lock()
	ids := make([]uint64, 0, len(h.nodes))
	for id := range h.nodes {
		ids = append(ids, id)
	}
	h.mu.Unlock()
	for _, id := range ids {
		if p, ok := paths.attachedPath(id); ok && p == remote {
			return true
		}
	}
	return false
}

// add hides node id's key.
func (h *hiddenKeys) add(id uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.nodes == nil {
		h.nodes = map[uint64]bool{}
	}
	if !h.nodes[id] {
		h.nodes[id] = true
		h.n.Add(1)
	}
}

// has reports whether node id's key is hidden: whether the node has a
// passthrough writer. It takes no node's mutex.
func (h *hiddenKeys) has(id uint64) bool {
	if h.n.Load() == 0 {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.nodes[id]
}

// remove shows node id's key again.
func (h *hiddenKeys) remove(id uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.nodes[id] {
		delete(h.nodes, id)
		h.n.Add(-1)
	}
}
