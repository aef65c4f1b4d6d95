package copier

import (
	"context"
	"fmt"
	"sync"
	"unicode/utf8"
)

// A copy's own files (the sorted runs of the listing and of the old
// manifest, the plan, the new manifest) grow with the number of keys, not
// their bytes: about three lines of a key's path each. A bucket of ten
// million keys with long names would write gigabytes of them before the
// plan is known, so they are metered: every byte is asked for
// (Options.Bookkeeping) before it is written, and Options.Space then
// charges them with the files (Sizes).

// bookkeepingStep is the least a meter wants at once; it wants an eighth
// of what it was granted when that is more, so a huge listing asks a few
// dozen times, not once per MiB. It needs only the bytes about to be
// written: near the end of the room it takes what is left.
const bookkeepingStep = 1 << 20

// meter counts the bytes written to a copy's own files and asks for room
// before they grow past what was granted. Safe for concurrent use (the
// downloads add manifest entries in parallel); ask is never called twice
// at once. A nil meter counts nothing.
type meter struct {
	ctx context.Context
	dir string
	ask func(ctx context.Context, dir string, need, want int64) (int64, error)

	mu            sync.Mutex
	used, granted int64
}

// grow is called before n more bytes are written to the copy's files; an
// error from ask (the room was refused) is returned and nothing is
// counted.
func (m *meter) grow(n int64) error {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if short := m.used + n - m.granted; short > 0 {
		got, err := m.ask(m.ctx, m.dir, short, max(short, bookkeepingStep, m.granted/8))
		if err != nil {
			return err
		}
		if got < short {
			return fmt.Errorf("the copy's bookkeeping was granted %d bytes, it needs %d", got, short)
		}
		m.granted += got
	}
	m.used += n
	return nil
}

// settle is called when Options.Space charges the bookkeeping with the
// files: from then on what was written and ahead bytes more are granted
// (Space reserved exactly that), and bytes beyond ask again. It returns
// the bytes written so far.
func (m *meter) settle(ahead int64) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.granted = addSpace(m.used, ahead)
	return m.used
}

// entryBytes is at least the length of the manifest line of a file at
// path with fingerprint fp: the JSON of its fields with every character
// Go's encoder may escape counted as a six-byte escape, and both numbers
// at their longest.
func entryBytes(path, fp string) int64 {
	const fixed = len(`{"path":"","fp":"","size":,"mtime":}`+"\n") + 2*20
	return int64(fixed) + jsonStringBytes(path) + jsonStringBytes(fp)
}

// jsonStringBytes is at most 6 bytes per character of s the encoder
// escapes (controls, quotes, backslashes, <, >, &, U+2028, U+2029 and
// invalid bytes) and the character's own length for the others.
func jsonStringBytes(s string) int64 {
	var n int64
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1, r < 0x20, r == '"', r == '\\', r == '<', r == '>', r == '&', r == '\u2028', r == '\u2029':
			n += 6
		default:
			n += int64(size)
		}
		i += size
	}
	return n
}
