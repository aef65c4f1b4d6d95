package bucket

import (
	"sync"
	"time"
)

// Journal remembers, within one process, the buckets it has asked the
// store to create and not yet marked; it trusts a note for AdoptWindow. A
// crash between CreateBucket and the mark leaves an empty unmarked bucket
// that looks exactly like an empty bucket of someone else; the journal is
// what tells them apart: a retry in the same process marks (adopts) only
// buckets in its journal. After a restart the journal is empty, and such
// a bucket is refused with advice to re-mark it (`bucket-csi storage
// remark`) rather than adopted on a guess. Safe for concurrent use; the
// zero value is not usable, use NewJournal.
type Journal struct {
	mu      sync.Mutex
	pending map[Ref]time.Time // when this process began creating it
}

// NewJournal returns an empty journal.
func NewJournal() *Journal { return &Journal{pending: map[Ref]time.Time{}} }

// add records that this process is creating ref. A note stays until done
// (only creates whose outcome is unknown leave one behind: a lost answer,
// an error the store gives for a create it may have made), so an old note
// still tells an empty bucket of that name apart (noted).
func (j *Journal) add(ref Ref) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.pending[ref] = time.Now()
}

// noted reports whether this process began creating ref and has not
// marked it (noted), and whether that was within AdoptWindow (fresh). Only
// a fresh note is trusted: a create whose answer was lost and that was
// not retried for that long may never have happened, and the name since
// taken by someone else of the account.
func (j *Journal) noted(ref Ref) (fresh, noted bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	at, ok := j.pending[ref]
	return ok && time.Since(at) < AdoptWindow, ok
}

// done forgets ref: it is marked, or it is not ours.
func (j *Journal) done(ref Ref) {
	j.mu.Lock()
	defer j.mu.Unlock()
	delete(j.pending, ref)
}
