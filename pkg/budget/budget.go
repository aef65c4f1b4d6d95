// Package budget keeps a node-wide budget of one resource (node disk for
// COPY copies and MOUNT_CACHED caches, read-ahead memory for MOUNT servers)
// as a ledger of reservations keyed by volume ID, so volumes staged at the
// same time can never together promise more than the budget.
//
// Contract: the sum of the reservations never exceeds the budget; a
// reservation that does not fit is refused with fault.Exhausted and the
// figures (needed, budget, reserved by other volumes), and changes nothing.
// Every change is written to the ledger file (atomically, 0600) before it
// is acknowledged, so a restarted plugin counts the volumes still staged.
// A ledger is safe for concurrent use.
package budget

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"sort"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bucket-csi/bucket-csi/pkg/atomicfile"
	"github.com/bucket-csi/bucket-csi/pkg/fault"
)

// Reservation is what one volume holds.
type Reservation struct {
	Bytes int64 `json:"bytes"`
	// Path is where the reserved bytes live (a copy, a cache), if on
	// disk: a reservation whose volume is gone is still counted while its
	// path exists (see Reconcile).
	Path string    `json:"path,omitempty"`
	At   time.Time `json:"at"`
	// Kept marks data kept on disk for a volume that is no longer staged
	// (a kept COPY copy): Reserve and Grow evict it, removing Path,
	// oldest first, when a volume being staged needs the room.
	Kept bool `json:"kept,omitempty"`
}

// file is the ledger's on-disk form.
type file struct {
	// Base is the measured size the budget was derived from (see Open).
	Base         int64                  `json:"base,omitempty"`
	Reservations map[string]Reservation `json:"reservations"`
}

// Ledger is the budget of one resource on this node.
type Ledger struct {
	// Name names the resource in errors ("node disk").
	Name string
	// Hint tells the reader of a refusal what to change.
	Hint string
	// Unit names what the budget counts in errors ("bytes" when empty).
	Unit string
	// Log, if set, records evictions.
	Log *slog.Logger
	// Remove deletes the path of evicted kept data; nil means
	// os.RemoveAll. (A COPY copy needs stage.RemoveCopy: it holds an
	// immutable guard directory.)
	Remove func(path string) error

	// Dropped lists the volumes whose reservations Open dropped.
	Dropped []string

	path   string
	budget int64

	mu   sync.Mutex
	data file
}

// Options say how a ledger's budget is set.
type Options struct {
	// Fixed, when positive, is the budget in bytes.
	Fixed int64
	// Measure returns the bytes available to the resource now (for
	// node disk: the free space of its filesystem); used when Fixed is 0.
	Measure func() (int64, error)
	// Fraction of the measured bytes that make the budget (0 < f <= 1).
	Fraction float64
	// Live reports whether a volume is still staged on this node (nil:
	// every volume is). Open drops the reservations of volumes that are
	// neither live nor still on disk at their Path.
	Live func(volumeID string) bool
}

// Open loads the ledger at path (a missing file is an empty ledger),
// drops the reservations of volumes that are gone (see Options.Live; their
// IDs are in Dropped) and sets its budget. A fixed budget is used as is. A measured one is
// Fraction of Measure(), taken when the ledger holds no reservation and
// recorded in the ledger: while reservations are held their bytes are
// already missing from a new measurement, so a restarted plugin keeps the
// base it measured when the node held nothing and counts nothing twice.
func Open(path string, opt Options) (*Ledger, error) {
	l := &Ledger{path: path, data: file{Reservations: map[string]Reservation{}}}
	raw, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		if err := json.Unmarshal(raw, &l.data); err != nil {
			return nil, fmt.Errorf("budget ledger %s is corrupt: %w", path, err)
		}
		if l.data.Reservations == nil {
			l.data.Reservations = map[string]Reservation{}
		}
	}
	if opt.Live != nil {
		l.Dropped = l.dropGone(opt.Live)
	}
	switch {
	case opt.Fixed > 0:
		l.budget = opt.Fixed
	case opt.Measure == nil || opt.Fraction <= 0 || opt.Fraction > 1:
		return nil, fmt.Errorf("budget %s: a fixed budget or a measure and a fraction in (0, 1] are needed", path)
	default:
		if len(l.data.Reservations) == 0 || l.data.Base <= 0 {
			base, err := opt.Measure()
			if err != nil {
				return nil, fmt.Errorf("measuring the budget: %w", err)
			}
			l.data.Base = base + l.reservedLocked("")
		}
		l.budget = int64(float64(l.data.Base) * opt.Fraction)
	}
	if err := l.saveLocked(); err != nil {
		return nil, err
	}
	return l, nil
}

// Budget returns the budget in bytes.
func (l *Ledger) Budget() int64 { return l.budget }

// Reserved returns the bytes reserved by all volumes.
func (l *Ledger) Reserved() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reservedLocked("")
}

// Get returns the reservation of volumeID, if any.
func (l *Ledger) Get(volumeID string) (Reservation, bool) {
	if l == nil {
		return Reservation{}, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.data.Reservations[volumeID]
	return r, ok
}

// reservedLocked sums the reservations of every volume but except.
func (l *Ledger) reservedLocked(except string) int64 {
	var n int64
	for id, r := range l.data.Reservations {
		if id != except {
			n += r.Bytes
		}
	}
	return n
}

// Reserve sets the reservation of volumeID to n bytes, replacing any it
// held (a restage of a kept copy asks again for its whole size). When n
// and the other volumes' reservations exceed the budget, kept data of
// other volumes is evicted, oldest first, if that makes room; otherwise it
// fails with fault.Exhausted and the figures, evicting nothing. A nil
// ledger reserves nothing.
func (l *Ledger) Reserve(volumeID string, n int64, path string) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	others := l.reservedLocked(volumeID)
	if n > l.budget-others {
		if err := l.evictLocked(volumeID, n-(l.budget-others)); err != nil {
			return err
		}
		others = l.reservedLocked(volumeID)
	}
	if n > l.budget-others {
		return l.refusal(n, others)
	}
	return l.setLocked(volumeID, &Reservation{Bytes: n, Path: path, At: time.Now().UTC()})
}

// refusal is the error of a reservation of n that does not fit beside
// others.
func (l *Ledger) refusal(n, others int64) error {
	u := l.unit()
	return fmt.Errorf("%w: %s: this volume needs %d %s but the node's budget is %d %s and %d %s are already reserved by other volumes (%d left)%s",
		fault.Exhausted, l.Name, n, u, l.budget, u, others, u, max(l.budget-others, 0), l.hint())
}

// Grow raises the reservation of volumeID (none is 0) by at least need
// and at most want bytes, and sets its path; it returns the bytes added.
// It adds what the budget has room for now, up to want. Only when that is
// less than need is kept data of other volumes evicted, oldest first, and
// only if evicting makes room for need (as Reserve does): a volume that
// grows step by step never evicts kept data for room it does not need
// yet. Without room for need it fails with fault.Exhausted and the
// figures and changes nothing (but what a failed eviction removed, as
// with Reserve). A nil ledger grants want.
func (l *Ledger) Grow(volumeID string, need, want int64, path string) (int64, error) {
	need = max(need, 0)
	want = max(want, need)
	if l == nil {
		return want, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.data.Reservations[volumeID]
	others := l.reservedLocked(volumeID)
	// Reservations never exceed the budget but across a restart that
	// lowered it: room is then negative, by at most the old budget.
	room := l.budget - others - r.Bytes
	if need > 0 && need > room {
		short := int64(math.MaxInt64)
		if room >= 0 || need <= math.MaxInt64+room {
			short = need - room
		}
		if err := l.evictLocked(volumeID, short); err != nil {
			return 0, err
		}
		others = l.reservedLocked(volumeID)
		room = l.budget - others - r.Bytes
	}
	if need > 0 && need > room {
		return 0, l.refusal(r.Bytes+min(need, math.MaxInt64-r.Bytes), others)
	}
	n := max(min(want, room), 0)
	if n == 0 {
		return 0, nil // nothing asked (need 0), nothing added
	}
	r.Bytes += n
	r.Path, r.At = path, time.Now().UTC()
	return n, l.setLocked(volumeID, &r)
}

// evictLocked removes kept data of volumes other than volumeID, oldest
// first, until at least need bytes are freed; when all of it would not
// free need bytes it removes nothing.
func (l *Ledger) evictLocked(volumeID string, need int64) error {
	var kept []string
	var total int64
	for id, r := range l.data.Reservations {
		if r.Kept && id != volumeID {
			kept = append(kept, id)
			total += r.Bytes
		}
	}
	if total < need {
		return nil
	}
	sort.Slice(kept, func(i, j int) bool {
		return l.data.Reservations[kept[i]].At.Before(l.data.Reservations[kept[j]].At)
	})
	for _, id := range kept {
		if need <= 0 {
			break
		}
		r := l.data.Reservations[id]
		if r.Path != "" {
			remove := l.Remove
			if remove == nil {
				remove = os.RemoveAll
			}
			if err := remove(r.Path); err != nil {
				return fmt.Errorf("evicting the kept data of %s: %w", id, err)
			}
		}
		if err := l.setLocked(id, nil); err != nil {
			return err
		}
		need -= r.Bytes
		if l.Log != nil {
			l.Log.Info("evicted kept data to make room", "resource", l.Name, "volume", id, "bytes", r.Bytes, "path", r.Path)
		}
	}
	return nil
}

// Keep marks the reservation of volumeID as kept data of a volume no
// longer staged, which Reserve and Grow may evict (see Reservation.Kept).
func (l *Ledger) Keep(volumeID string) error { return l.markKept(volumeID, true) }

// Claim clears the kept mark of volumeID before its data is used again:
// from then on it is never evicted. No reservation is fine.
func (l *Ledger) Claim(volumeID string) error { return l.markKept(volumeID, false) }

func (l *Ledger) markKept(volumeID string, kept bool) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.data.Reservations[volumeID]
	if !ok || r.Kept == kept {
		return nil
	}
	r.Kept = kept
	return l.setLocked(volumeID, &r)
}

// ReserveUpTo reserves for volumeID up to want bytes: all of it when the
// budget has room, otherwise what is left if that is at least floor,
// otherwise nothing. It returns the bytes reserved. A nil ledger grants
// want.
func (l *Ledger) ReserveUpTo(volumeID string, want, floor int64) (int64, error) {
	if l == nil {
		return want, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	n := min(want, max(l.budget-l.reservedLocked(volumeID), 0))
	if n < floor {
		n = 0
	}
	return n, l.setLocked(volumeID, &Reservation{Bytes: n, At: time.Now().UTC()})
}

// Shrink lowers the reservation of volumeID by n bytes (to no less than
// zero), keeping its path, time and kept mark: it never asks for room, so
// it never fails for the budget nor evicts anything. No reservation is
// fine.
func (l *Ledger) Shrink(volumeID string, n int64) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.data.Reservations[volumeID]
	if !ok || n <= 0 {
		return nil
	}
	r.Bytes = max(r.Bytes-n, 0)
	return l.setLocked(volumeID, &r)
}

// Release drops the reservation of volumeID (none is fine).
func (l *Ledger) Release(volumeID string) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.data.Reservations[volumeID]; !ok {
		return nil
	}
	return l.setLocked(volumeID, nil)
}

// dropGone removes the reservations of volumes that are neither live nor
// on disk at their Path, and returns their IDs. Called by Open only.
func (l *Ledger) dropGone(live func(volumeID string) bool) []string {
	var dropped []string
	for id, r := range l.data.Reservations {
		if live(id) {
			continue
		}
		if r.Path != "" {
			if _, err := os.Lstat(r.Path); err == nil {
				continue
			}
		}
		dropped = append(dropped, id)
	}
	for _, id := range dropped {
		delete(l.data.Reservations, id)
	}
	sort.Strings(dropped)
	return dropped
}

// setLocked sets (r != nil) or removes the reservation of volumeID and
// saves the ledger; on a failed save the change is undone.
func (l *Ledger) setLocked(volumeID string, r *Reservation) error {
	old, had := l.data.Reservations[volumeID]
	if r != nil {
		l.data.Reservations[volumeID] = *r
	} else {
		delete(l.data.Reservations, volumeID)
	}
	if err := l.saveLocked(); err != nil {
		if had {
			l.data.Reservations[volumeID] = old
		} else {
			delete(l.data.Reservations, volumeID)
		}
		return fmt.Errorf("saving the %s ledger: %w", l.Name, err)
	}
	return nil
}

// saveLocked writes the ledger atomically with mode 0600.
func (l *Ledger) saveLocked() error {
	return atomicfile.WriteJSON(l.path, l.data)
}

func (l *Ledger) unit() string {
	if l.Unit == "" {
		return "bytes"
	}
	return l.Unit
}

func (l *Ledger) hint() string {
	if l.Hint == "" {
		return ""
	}
	return "; " + l.Hint
}

// DiskFree returns the bytes an unprivileged writer can still use on the
// filesystem holding path: a Measure for a node-disk ledger.
func DiskFree(path string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}
