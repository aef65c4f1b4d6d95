package bench

import (
	"bytes"
	"io"
	"testing"
)

// readSizes is a reader of n bytes that records the size of every buffer
// it is asked to fill.
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
}
