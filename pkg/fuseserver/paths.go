package fuseserver

import (
	"cmp"
	"path"
	"slices"
	"sync"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// trackFS learns the VFS path of every node the kernel holds, for the
// layers above it that get node IDs only (fsync's upload, passthrough,
// MOUNT's reads). It must sit right above the node filesystem: it learns
// each node's parent and name from the replies that create kernel
// references (Lookup, Create, Mkdir, Mknod, Symlink, Link) and follows
// Rename, Unlink, Rmdir and Forget. READDIRPLUS is disabled by the server
// options, so no reference is created elsewhere.
type trackFS struct {
	fuse.RawFileSystem
	paths pathTable
}

func newTrackFS(inner fuse.RawFileSystem) *trackFS {
	return &trackFS{RawFileSystem: inner, paths: pathTable{nodes: map[uint64]*pnode{}, names: map[pkey]uint64{}}}
}

func (t *trackFS) Lookup(c <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	st := t.RawFileSystem.Lookup(c, h, name, out)
	if st.Ok() {
		t.paths.learn(out.NodeId, h.NodeId, name)
	}
	return st
}

func (t *trackFS) Create(c <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	st := t.RawFileSystem.Create(c, in, name, out)
	if st.Ok() {
		t.paths.learn(out.NodeId, in.NodeId, name)
	}
	return st
}

func (t *trackFS) Mkdir(c <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	st := t.RawFileSystem.Mkdir(c, in, name, out)
	if st.Ok() {
		t.paths.learn(out.NodeId, in.NodeId, name)
	}
	return st
}

func (t *trackFS) Mknod(c <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	st := t.RawFileSystem.Mknod(c, in, name, out)
	if st.Ok() {
		t.paths.learn(out.NodeId, in.NodeId, name)
	}
	return st
}

func (t *trackFS) Symlink(c <-chan struct{}, h *fuse.InHeader, to, name string, out *fuse.EntryOut) fuse.Status {
	st := t.RawFileSystem.Symlink(c, h, to, name, out)
	if st.Ok() {
		t.paths.learn(out.NodeId, h.NodeId, name)
	}
	return st
}

func (t *trackFS) Link(c <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	st := t.RawFileSystem.Link(c, in, name, out)
	if st.Ok() {
		t.paths.learn(out.NodeId, in.NodeId, name)
	}
	return st
}

func (t *trackFS) Forget(nodeid, nlookup uint64) {
	t.paths.forget(nodeid, nlookup)
	t.RawFileSystem.Forget(nodeid, nlookup)
}

// Rename records a rename the inner file system made (replaceGuard, the
// outer layer, has refused the flags rclone ignores).
func (t *trackFS) Rename(c <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	st := t.RawFileSystem.Rename(c, in, oldName, newName)
	if st.Ok() {
		t.paths.rename(in.NodeId, oldName, in.Newdir, newName)
	}
	return st
}

func (t *trackFS) Unlink(c <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	st := t.RawFileSystem.Unlink(c, h, name)
	if st.Ok() {
		t.paths.unlink(h.NodeId, name)
	}
	return st
}

func (t *trackFS) Rmdir(c <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	st := t.RawFileSystem.Rmdir(c, h, name)
	if st.Ok() {
		t.paths.rmdir(h.NodeId, name)
	}
	return st
}

// pathTable maps kernel node IDs to (parent, name), following the kernel's
// reference counts. Node 1 is the root.
type pathTable struct {
	mu    sync.Mutex
	nodes map[uint64]*pnode
	names map[pkey]uint64
	// seq numbers the renames and unlinks applied; moves keeps the last
	// movesKept of them (passthrough's settles follow them).
	seq   uint64
	moves []pathMove
}

// pathMove is a rename of the VFS path from to to, or an unlink of from
// (to ""), the seq-th the table applied.
type pathMove struct {
	seq      uint64
	from, to string
}

// movesKept is how many of the last moves a pathTable keeps.
const movesKept = 256

type pnode struct {
	key     pkey
	lookups uint64
}

type pkey struct {
	parent uint64
	name   string
}

func (t *pathTable) learn(id, parent uint64, name string) {
	if id == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.nodes[id]
	if n == nil {
		n = &pnode{}
		t.nodes[id] = n
	}
	if n.key != (pkey{}) && t.names[n.key] == id {
		delete(t.names, n.key)
	}
	n.key = pkey{parent, name}
	n.lookups++
	t.names[n.key] = id
}

func (t *pathTable) forget(id, count uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.nodes[id]
	if n == nil {
		return
	}
	if n.lookups > count {
		n.lookups -= count
		return
	}
	if t.names[n.key] == id {
		delete(t.names, n.key)
	}
	delete(t.nodes, id)
}

func (t *pathTable) rename(oldParent uint64, oldName string, newParent uint64, newName string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	// The move is logged even when no node of the source is known: a
	// settle follows paths, not nodes.
	from, okFrom := t.pathLocked(oldParent)
	to, okTo := t.pathLocked(newParent)
	if okFrom && okTo {
		t.logMove(path.Join(from, oldName), path.Join(to, newName))
	}
	old := pkey{oldParent, oldName}
	id, ok := t.names[old]
	if !ok {
		return
	}
	delete(t.names, old)
	nk := pkey{newParent, newName}
	t.names[nk] = id
	t.nodes[id].key = nk
}

func (t *pathTable) unlink(parent uint64, name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.names, pkey{parent, name})
	if dir, ok := t.pathLocked(parent); ok {
		t.logMove(path.Join(dir, name), "")
	}
}

// rmdir drops the name of a removed directory (empty: no move to log).
func (t *pathTable) rmdir(parent uint64, name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.names, pkey{parent, name})
}

// logMove numbers and keeps a move; t.mu is held.
func (t *pathTable) logMove(from, to string) {
	t.seq++
	t.moves = append(t.moves, pathMove{seq: t.seq, from: from, to: to})
	if len(t.moves) > movesKept {
		t.moves = slices.Delete(t.moves, 0, len(t.moves)-movesKept)
	}
}

// movesAfter returns the kept moves numbered after seq, and false if some
// of those were no longer kept.
func (t *pathTable) movesAfter(seq uint64) ([]pathMove, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i, _ := slices.BinarySearchFunc(t.moves, seq+1, func(m pathMove, s uint64) int { return cmp.Compare(m.seq, s) })
	whole := len(t.moves) == 0 || t.moves[0].seq <= seq+1
	return slices.Clone(t.moves[i:]), whole
}

// attachedPathSeq is attachedPath with the number of the last move the
// path reflects (read together).
func (t *pathTable) attachedPathSeq(id uint64) (string, bool, uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for at, depth := id, 0; at != 1; depth++ {
		n := t.nodes[at]
		if n == nil || t.names[n.key] != at || depth > 4096 {
			return "", false, t.seq
		}
		at = n.key.parent
	}
	p, ok := t.pathLocked(id)
	return p, ok, t.seq
}

// attachedPath is path for a node that is still what its path names: not
// unlinked, not replaced by a rename, and so are its parents.
func (t *pathTable) attachedPath(id uint64) (string, bool) {
	p, ok, _ := t.attachedPathSeq(id)
	return p, ok
}

// attachedKey returns the parent and name of node id while its name
// still names it (not unlinked, not replaced by a rename).
func (t *pathTable) attachedKey(id uint64) (parent uint64, name string, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.nodes[id]
	if n == nil || t.names[n.key] != id {
		return 0, "", false
	}
	return n.key.parent, n.key.name, true
}

// path returns the VFS path of node id.
func (t *pathTable) path(id uint64) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pathLocked(id)
}

// pathLocked is path with t.mu held.
func (t *pathTable) pathLocked(id uint64) (string, bool) {
	var parts []string
	for depth := 0; id != 1; depth++ {
		n := t.nodes[id]
		if n == nil || depth > 4096 {
			return "", false
		}
		parts = append(parts, n.key.name)
		id = n.key.parent
	}
	for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
		parts[i], parts[j] = parts[j], parts[i]
	}
	return path.Join(parts...), true
}

// lookups is how many lookups of node id the table counts (0: unknown).
func (t *pathTable) lookups(id uint64) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := t.nodes[id]; n != nil {
		return n.lookups
	}
	return 0
}

// child is the node the name under parent leads to, if the table knows it.
func (t *pathTable) child(parent uint64, name string) (uint64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	id, ok := t.names[pkey{parent, name}]
	return id, ok
}
