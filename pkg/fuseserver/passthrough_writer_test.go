package fuseserver

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rclone/rclone/vfs"
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

// writesAt records what WriteAt is given (copyInto's only call on it).
type writesAt struct {
	vfs.Handle
	got   []byte
	calls int
}

func (w *writesAt) WriteAt(b []byte, off int64) (int, error) {
	if end := off + int64(len(b)); end > int64(len(w.got)) {
		w.got = append(w.got, make([]byte, end-int64(len(w.got)))...)
	}
	w.calls++
	return copy(w.got[off:], b), nil
}

// TestCopyIntoCopiesEveryByte: copyInto hands every byte of files around
// its buffer sizes to the handle, at their offsets, and returns the size,
// also when the file grew or shrank after the size it was given; a file
// up to its largest buffer, of the size given, takes one write.
func TestCopyIntoCopiesEveryByte(t *testing.T) {
	for _, size := range []int{0, 1, copyBuffer - 1, copyBuffer, copyBuffer + 1, 3*copyBuffer + 5} {
		want := make([]byte, size)
		for i := range want {
			want[i] = byte(i*7 + i/251)
		}
		path := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(path, want, 0o600); err != nil {
			t.Fatal(err)
		}
		// The size as looked at, a file that grew since it was (0) and
		// one that shrank (10 bytes more).
		for _, hint := range []int64{int64(size), 0, int64(size) + 10} {
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			var h writesAt
			n, err := copyInto(&h, f, hint)
			f.Close()
			if err != nil || n != int64(size) || !bytes.Equal(h.got, want) {
				t.Fatalf("%d bytes, hint %d: copied %d (%v), equal %v", size, hint, n, err, bytes.Equal(h.got, want))
			}
			if hint == int64(size) && size > 0 && size < copyBuffer && h.calls != 1 {
				t.Errorf("%d bytes: %d writes, want 1", size, h.calls)
			}
		}
	}
}
