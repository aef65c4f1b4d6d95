package budget

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
)

func fixed(t *testing.T, path string, n int64) *Ledger {
	t.Helper()
	l, err := Open(path, Options{Fixed: n})
	if err != nil {
		t.Fatal(err)
	}
	l.Name = "node disk"
	return l
}

// TestLedgerReserveReleaseRefuse: reservations add up to the budget, one
// more is refused with fault.Exhausted and the figures (needed, budget,
// reserved) and changes nothing, a repeat replaces a volume's own
// reservation, and a release makes room.
func TestLedgerReserveReleaseRefuse(t *testing.T) {
	l := fixed(t, filepath.Join(t.TempDir(), "disk.json"), 1000)
	if err := l.Reserve("a", 600, ""); err != nil {
		t.Fatal(err)
	}
	if err := l.Reserve("b", 400, ""); err != nil {
		t.Fatalf("a reservation that exactly fills the budget: %v", err)
	}
	err := l.Reserve("c", 1, "")
	if !errors.Is(err, fault.Exhausted) {
		t.Fatalf("over budget = %v, want fault.Exhausted", err)
	}
	for _, fig := range []string{"needs 1 bytes", "budget is 1000 bytes", "1000 bytes are already reserved"} {
		if !strings.Contains(err.Error(), fig) {
			t.Fatalf("refusal %q lacks %q", err, fig)
		}
	}
	if _, ok := l.Get("c"); ok || l.Reserved() != 1000 {
		t.Fatalf("a refusal changed the ledger: reserved %d", l.Reserved())
	}
	// A volume asking again is measured against the others only.
	if err := l.Reserve("a", 550, ""); err != nil || l.Reserved() != 950 {
		t.Fatalf("re-reserve of a volume: %v, reserved %d", err, l.Reserved())
	}
	if err := l.Reserve("a", 601, ""); !errors.Is(err, fault.Exhausted) {
		t.Fatalf("growing past the budget = %v", err)
	}
	if r, _ := l.Get("a"); r.Bytes != 550 {
		t.Fatalf("a refused growth changed the reservation to %d", r.Bytes)
	}
	if err := l.Release("b"); err != nil {
		t.Fatal(err)
	}
	if err := l.Release("b"); err != nil {
		t.Fatalf("second release: %v", err)
	}
	if err := l.Reserve("c", 450, ""); err != nil {
		t.Fatalf("after a release: %v", err)
	}
}

// TestLedgerReserveUpTo: a grant is the full want while the budget has
// room, then what is left down to the floor, then nothing.
func TestLedgerReserveUpTo(t *testing.T) {
	l := fixed(t, filepath.Join(t.TempDir(), "mem.json"), 100)
	for _, tc := range []struct {
		id   string
		want int64
	}{{"a", 40}, {"b", 40}, {"c", 20}, {"d", 0}} {
		got, err := l.ReserveUpTo(tc.id, 40, 15)
		if err != nil || got != tc.want {
			t.Fatalf("grant %s = %d, %v; want %d", tc.id, got, err, tc.want)
		}
	}
	if l.Reserved() != 100 {
		t.Fatalf("reserved %d", l.Reserved())
	}
	if err := l.Release("a"); err != nil {
		t.Fatal(err)
	}
	if got, _ := l.ReserveUpTo("e", 40, 15); got != 40 {
		t.Fatalf("grant after a release = %d", got)
	}
}

// TestLedgerPersistsAndReconciles: a reopened ledger holds the
// reservations of volumes still staged or still on disk, drops the rest,
// and keeps the base it measured when it was empty (the bytes of held
// reservations are missing from a new measurement: nothing counts twice).
func TestLedgerPersistsAndReconciles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "disk.json")
	free := int64(10000)
	measure := func() (int64, error) { return free, nil }
	l, err := Open(path, Options{Measure: measure, Fraction: 0.8})
	if err != nil {
		t.Fatal(err)
	}
	if l.Budget() != 8000 {
		t.Fatalf("budget %d, want 80%% of 10000", l.Budget())
	}
	kept := filepath.Join(dir, "kept-copy")
	if err := os.MkdirAll(kept, 0o700); err != nil {
		t.Fatal(err)
	}
	for id, path := range map[string]string{"staged": "", "kept": kept, "gone": filepath.Join(dir, "removed")} {
		if err := l.Reserve(id, 2000, path); err != nil {
			t.Fatal(err)
		}
	}
	free = 4000 // the reserved bytes are now on the disk
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("ledger file: %v %v", info, err)
	}
	l2, err := Open(path, Options{Measure: measure, Fraction: 0.8, Live: func(id string) bool { return id == "staged" }})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(l2.Dropped) != "[gone]" {
		t.Fatalf("dropped %v, want [gone]", l2.Dropped)
	}
	if l2.Budget() != 8000 || l2.Reserved() != 4000 {
		t.Fatalf("reopened: budget %d reserved %d, want 8000 and 4000", l2.Budget(), l2.Reserved())
	}
	if err := l2.Reserve("new", 4001, ""); !errors.Is(err, fault.Exhausted) {
		t.Fatalf("reopened ledger overcommits: %v", err)
	}
	// Emptied and reopened: measured afresh.
	for _, id := range []string{"staged", "kept"} {
		if err := l2.Release(id); err != nil {
			t.Fatal(err)
		}
	}
	free = 5000
	l3, err := Open(path, Options{Measure: measure, Fraction: 0.8})
	if err != nil || l3.Budget() != 4000 {
		t.Fatalf("empty ledger reopened: budget %d, %v; want 80%% of 5000", l3.Budget(), err)
	}
	if err := os.WriteFile(path, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, Options{Fixed: 1}); err == nil {
		t.Fatal("a corrupt ledger was opened")
	}
}

// TestLedgerConcurrentNeverOvercommits: many goroutines reserving,
// re-reserving and releasing at once never hold more than the budget (a
// sampler watches the total throughout), every refusal is fault.Exhausted,
// and the ledger ends holding exactly what the goroutines were granted.
func TestLedgerConcurrentNeverOvercommits(t *testing.T) {
	const budget = 10_000
	l := fixed(t, filepath.Join(t.TempDir(), "disk.json"), budget)
	var granted, refused, peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if r := l.Reserved(); r > peak.Load() {
				peak.Store(r)
			}
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	held := make([]int64, 64) // per goroutine: its volumes are its own
	var wg sync.WaitGroup
	for g := range held {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := map[string]int64{}
			for i := 0; i < 20; i++ {
				id := fmt.Sprintf("vol-%d-%d", g, i%3)
				n := int64(100 + (g*37+i*53)%900)
				switch err := l.Reserve(id, n, ""); {
				case err == nil:
					granted.Add(1)
					mine[id] = n
				case errors.Is(err, fault.Exhausted):
					refused.Add(1)
				default:
					t.Error(err)
				}
				if i%4 == 3 {
					if err := l.Release(id); err != nil {
						t.Error(err)
					}
					delete(mine, id)
				}
			}
			for _, n := range mine {
				held[g] += n
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-sampled
	var sum int64
	for _, n := range held {
		sum += n
	}
	if peak.Load() > budget || l.Reserved() != sum {
		t.Fatalf("peak %d > budget %d, or ledger %d != granted and not released %d", peak.Load(), budget, l.Reserved(), sum)
	}
	if granted.Load() == 0 || refused.Load() == 0 {
		t.Fatalf("granted %d, refused %d: the test did not reach the budget", granted.Load(), refused.Load())
	}
}

// TestLedgerEvictsKeptData: kept data (a kept COPY copy of a volume no
// longer staged) makes room for a volume being staged, oldest first and
// only as much as needed; claimed data is never evicted; when evicting all
// kept data would not make room, nothing is evicted and the refusal has
// the figures.
func TestLedgerEvictsKeptData(t *testing.T) {
	dir := t.TempDir()
	l := fixed(t, filepath.Join(dir, "disk.json"), 1000)
	paths := map[string]string{}
	for _, id := range []string{"old", "mid", "claimed"} {
		paths[id] = filepath.Join(dir, id)
		if err := os.MkdirAll(filepath.Join(paths[id], "data"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := l.Reserve(id, 300, paths[id]); err != nil {
			t.Fatal(err)
		}
		if err := l.Keep(id); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Claim("claimed"); err != nil {
		t.Fatal(err)
	}
	if err := l.Reserve("big", 801, ""); !errors.Is(err, fault.Exhausted) {
		t.Fatalf("a reservation that evicting all kept data cannot fit = %v", err)
	}
	for id, p := range paths {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("a refused reservation evicted %s: %v", id, err)
		}
	}
	if err := l.Reserve("new", 350, ""); err != nil {
		t.Fatalf("a reservation that fits once kept data is evicted: %v", err)
	}
	if _, err := os.Stat(paths["old"]); !os.IsNotExist(err) {
		t.Fatalf("the oldest kept copy is still there: %v", err)
	}
	for _, id := range []string{"mid", "claimed"} {
		if _, err := os.Stat(paths[id]); err != nil {
			t.Fatalf("%s was evicted although evicting the oldest made room: %v", id, err)
		}
	}
	if _, ok := l.Get("old"); ok || l.Reserved() != 950 {
		t.Fatalf("after the eviction: old still reserved or reserved %d, want 950", l.Reserved())
	}
	if err := l.Reserve("more", 51, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(paths["claimed"]); err != nil {
		t.Fatalf("claimed data was evicted: %v", err)
	}
	if _, err := os.Stat(paths["mid"]); !os.IsNotExist(err) {
		t.Fatalf("kept data not evicted: %v", err)
	}
}

// TestLedgerShrink: Shrink lowers a reservation without asking for room,
// so it succeeds even when the budget was lowered below what is reserved
// (no eviction, no refusal), keeps the kept mark, floors at zero, and
// ignores a volume without a reservation.
func TestLedgerShrink(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.json")
	l := fixed(t, path, 100)
	if err := l.Reserve("a", 80, ""); err != nil {
		t.Fatal(err)
	}
	if err := l.Keep("a"); err != nil {
		t.Fatal(err)
	}
	l2 := fixed(t, path, 50) // the budget lowered across a restart
	if err := l2.Shrink("a", 30); err != nil {
		t.Fatalf("Shrink under a lowered budget: %v", err)
	}
	if r, ok := l2.Get("a"); !ok || r.Bytes != 50 || !r.Kept {
		t.Fatalf("after Shrink: %+v, %v; want 50 bytes, kept", r, ok)
	}
	if err := l2.Shrink("a", 500); err != nil {
		t.Fatal(err)
	}
	if r, _ := l2.Get("a"); r.Bytes != 0 {
		t.Fatalf("a Shrink past the reservation left %d bytes, want 0", r.Bytes)
	}
	if err := l2.Shrink("none", 10); err != nil {
		t.Fatal(err)
	}
	if _, ok := l2.Get("none"); ok {
		t.Fatal("Shrink made a reservation")
	}
}

// TestLedgerGrow: Grow adds what the budget has room for, up to want;
// kept data is evicted only when the room is less than need and
// evicting makes room for it; without room for need, even after
// evicting all kept data, it is refused with the figures, evicts nothing
// and changes nothing.
func TestLedgerGrow(t *testing.T) {
	dir := t.TempDir()
	l := fixed(t, filepath.Join(dir, "ledger.json"), 100)
	keep := func(id string, n int64) string {
		t.Helper()
		p := filepath.Join(dir, id)
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := l.Reserve(id, n, p); err != nil {
			t.Fatal(err)
		}
		if err := l.Keep(id); err != nil {
			t.Fatal(err)
		}
		return p
	}
	grow := func(need, want, wantGot int64) {
		t.Helper()
		got, err := l.Grow("v", need, want, "/copy")
		if err != nil || got != wantGot {
			t.Fatalf("Grow(%d, %d) = %d, %v; want %d", need, want, got, err, wantGot)
		}
	}
	old := keep("old", 60)
	grow(10, 30, 30) // room 40
	grow(5, 30, 10)  // room 10: what is left, no eviction
	if _, err := os.Stat(old); err != nil {
		t.Fatalf("Grow evicted kept data while it had room for need: %v", err)
	}
	grow(5, 30, 30) // room 0: the kept data goes, then up to want
	if _, err := os.Stat(old); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Grow did not evict the kept data it needed the room of: %v", err)
	}
	if _, ok := l.Get("old"); ok {
		t.Fatal("the evicted reservation is still held")
	}
	small := keep("small", 10) // v 70, small 10
	if err := l.Reserve("live", 15, ""); err != nil {
		t.Fatal(err)
	}
	got, err := l.Grow("v", 20, 40, "/copy")
	if !errors.Is(err, fault.Exhausted) || got != 0 || !strings.Contains(err.Error(), "needs 90 bytes") || !strings.Contains(err.Error(), "25 bytes are already reserved") {
		t.Fatalf("Grow past the budget = %d, %v; want fault.Exhausted naming 90 needed and 25 reserved", got, err)
	}
	if r, _ := l.Get("v"); r.Bytes != 70 || r.Path != "/copy" {
		t.Fatalf("after a refused Grow: %+v, want 70 bytes at /copy", r)
	}
	if _, err := os.Stat(small); err != nil {
		t.Fatalf("a refused Grow evicted kept data that could not make room: %v", err)
	}
	// A restart lowered the budget below what is held: nothing asked is
	// nothing added; any need is refused, evicting nothing.
	lowered := fixed(t, filepath.Join(dir, "ledger.json"), 50)
	if got, err := lowered.Grow("v", 0, 10, "/copy"); err != nil || got != 0 {
		t.Fatalf("Grow(0, 10) over a lowered budget = %d, %v; want 0, nil", got, err)
	}
	if got, err := lowered.Grow("v", 1, 1, "/copy"); !errors.Is(err, fault.Exhausted) || got != 0 {
		t.Fatalf("Grow(1, 1) over a lowered budget = %d, %v; want fault.Exhausted", got, err)
	}
	if _, err := os.Stat(small); err != nil {
		t.Fatalf("a refused Grow over a lowered budget evicted kept data: %v", err)
	}
	var nilLedger *Ledger
	if got, err := nilLedger.Grow("v", 1, 1<<62, ""); err != nil || got != 1<<62 {
		t.Fatalf("Grow on no ledger = %d, %v; want all of it", got, err)
	}
}
