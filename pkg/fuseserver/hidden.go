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
	nodes map[uint64]bool // hidden node -> an fsync put its file in the bucket
}

// hide reports whether remote is the path of a node hidden now; it is a
// keyfilter hide function.
func (h *hiddenKeys) hide(remote string) bool {
	return h.any(func(path string, _ bool) bool { return path == remote })
}

// putBelow reports whether a hidden node whose file an fsync put in the
// bucket lies below the directory dir.
func (h *hiddenKeys) putBelow(dir string) bool {
	return h.any(func(path string, put bool) bool { return put && path != dir && below(path, dir) })
}

// any reports whether match holds for a hidden node, given its path now
// (unlinked nodes are left out) and whether an fsync put its file. (It
// takes the path table's lock under its own; nothing takes them the other
// way round.)
func (h *hiddenKeys) any(match func(path string, put bool) bool) bool {
	if h.n.Load() == 0 {
		return false
	}
	paths := h.paths.Load()
	if paths == nil {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, put := range h.nodes {
		if p, ok := paths.attachedPath(id); ok && match(p, put) {
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
	if _, ok := h.nodes[id]; !ok {
		h.nodes[id] = false
		h.n.Add(1)
	}
}

// put records that an fsync put node id's file in the bucket.
func (h *hiddenKeys) put(id uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.nodes[id]; ok {
		h.nodes[id] = true
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
	_, ok := h.nodes[id]
	return ok
}

// remove shows node id's key again.
func (h *hiddenKeys) remove(id uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.nodes[id]; ok {
		delete(h.nodes, id)
		h.n.Add(-1)
	}
}
