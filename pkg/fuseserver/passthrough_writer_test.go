package fuseserver

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// TestReleaseOrderServesTicketsInTurn: tickets are served in the order
// they were taken, whatever order their holders get to wait or finish, a
// ticket done without a wait included.
func TestReleaseOrderServesTicketsInTurn(t *testing.T) {
	var o releaseOrder
	var mu sync.Mutex
	var served []uint64
	var wg sync.WaitGroup
	tickets := []uint64{o.take(), o.take(), o.take(), o.take()}
	// Holders start in reverse order; the third finishes without waiting.
	for i := len(tickets) - 1; i >= 0; i-- {
		wg.Add(1)
		go func(tk uint64) {
			defer wg.Done()
			if tk != 2 {
				o.wait(tk)
				mu.Lock()
				served = append(served, tk)
				mu.Unlock()
			}
			o.done(tk)
		}(tickets[i])
		time.Sleep(10 * time.Millisecond)
	}
	wg.Wait()
	if !slices.Equal(served, []uint64{0, 1, 3}) {
		t.Fatalf("served %v, want [0 1 3]", served)
	}
	if tk := o.take(); tk != 4 {
		t.Fatalf("next ticket %d, want 4", tk)
	}
	done := make(chan struct{})
	go func() { o.wait(4); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the ticket after four done ones waits")
	}
}

// TestHiddenKeysFollowThePathTable: a hidden node's key is its path now,
// also after a rename, and no longer once it is unlinked or removed; a
// directory has a put below it once an fsync put a hidden file under it.
func TestHiddenKeysFollowThePathTable(t *testing.T) {
	pt := &pathTable{nodes: map[uint64]*pnode{}, names: map[pkey]uint64{}}
	pt.learn(2, 1, "dir")
	pt.learn(3, 2, "f.bin")
	var h hiddenKeys
	if h.hide("dir/f.bin") {
		t.Fatal("hidden before any node was added")
	}
	h.paths.Store(pt)
	h.add(3)
	if !h.hide("dir/f.bin") || h.hide("dir") || !h.has(3) || h.has(2) {
		t.Fatal("node 3 added: want dir/f.bin hidden, dir shown")
	}
	if h.putBelow("dir") {
		t.Fatal("no fsync put yet, but a put below dir")
	}
	h.put(3)
	if !h.putBelow("dir") || h.putBelow("dir/f.bin") || h.putBelow("di") || h.putBelow("other") {
		t.Fatal("after the put: want a put below dir only")
	}
	pt.rename(2, "f.bin", 1, "g.bin")
	if h.hide("dir/f.bin") || !h.hide("g.bin") {
		t.Fatal("after a rename the new path must be hidden, the old one shown")
	}
	pt.unlink(1, "g.bin")
	if h.hide("g.bin") {
		t.Fatal("an unlinked node's old path is hidden")
	}
	h.remove(3)
	if h.has(3) || h.n.Load() != 0 {
		t.Fatal("node 3 still counted after remove")
	}
}
