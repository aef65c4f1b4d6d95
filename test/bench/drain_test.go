package bench

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// readSizes reads from r and records the size of every buffer it is
// asked to fill.
type readSizes struct {
	r     io.Reader
	sizes []int
}

func (s *readSizes) Read(p []byte) (int, error) {
	s.sizes = append(s.sizes, len(p))
	return s.r.Read(p)
}

// TestDrainReadsInBlocksOfItsBuffer: the bench's readers read in blocks
// of their buffer's size (1 MiB for the large object), every call, and
// count every byte. io.CopyBuffer to io.Discard read 8 KiB at a time
// instead (read_test.go, drain).
func TestDrainReadsInBlocksOfItsBuffer(t *testing.T) {
	const size = 5<<20 + 3
	src := &readSizes{r: bytes.NewReader(make([]byte, size))}
	n, err := drainBlocks(src)
	if err != nil || n != size {
		t.Fatalf("drained %d bytes (%v), want %d", n, err, size)
	}
	for i, got := range src.sizes {
		if got != 1<<20 {
			t.Fatalf("read %d was asked for %d bytes, want 1 MiB (every size: %v)", i, got, src.sizes)
		}
	}
	if len(src.sizes) != 7 { // 5 whole blocks, the 3 bytes, the end
		t.Fatalf("%d reads for %d bytes, want 7", len(src.sizes), size)
	}
	// Short reads, bytes that come with io.EOF, and an error.
	for name, r := range map[string]io.Reader{
		"half":     iotest.HalfReader(bytes.NewReader(make([]byte, size))),
		"data+EOF": iotest.DataErrReader(bytes.NewReader(make([]byte, size))),
	} {
		if n, err := drainBlocks(r); err != nil || n != size {
			t.Fatalf("%s: drained %d bytes (%v), want %d", name, n, err, size)
		}
	}
	broken := errors.New("broken")
	if n, err := drainBlocks(io.MultiReader(bytes.NewReader(make([]byte, 10)), iotest.ErrReader(broken))); !errors.Is(err, broken) || n != 10 {
		t.Fatalf("a reader failing after 10 bytes drained %d bytes (%v), want 10 and its error", n, err)
	}
}
