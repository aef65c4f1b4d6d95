package bucket

import "sync"

// Journal remembers, for the life of one process, the buckets it has asked
// the store to create and not yet marked. A crash between CreateBucket
// and the mark leaves an empty unmarked bucket that looks exactly like an
// empty bucket of someone else; the journal is what tells them apart: a
// retry in the same process marks (adopts) only buckets in its journal.
// After a restart the journal is empty, and such a bucket is refused with
// advice to re-mark it (`bucket-csi storage remark`) rather than adopted
// on a guess. Safe for concurrent use; the zero value is not usable, use
// NewJournal.
type Journal struct {
	mu      sync.Mutex
	pending map[Ref]bool
}

// NewJournal returns an empty journal.
func NewJournal() *Journal { return &Journal{pending: map[Ref]bool{}} }

// add records that this process is creating ref.
func (j *Journal) add(ref Ref) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.pending[ref] = true
}

// has reports whether this process created ref and has not marked it.
func (j *Journal) has(ref Ref) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.pending[ref]
}

// done forgets ref: it is marked, or it is not ours.
func (j *Journal) done(ref Ref) {
	j.mu.Lock()
	defer j.mu.Unlock()
	delete(j.pending, ref)
}
