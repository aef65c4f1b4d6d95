package logging

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"
)

// Capped returns a writer to f (a log file opened with O_APPEND) that
// keeps the file under about limit bytes: when a write takes it past
// limit, the file is cut to its last keep bytes (from a line start),
// after a line that says so (all of it when f cannot be read). A FUSE
// server writes its log for as long as it lives, and a pod can make it log
// a line per failed read: without a cap, that fills the node's disk. Writes
// that fail to cut the file still go through. f that is not a regular file
// (a pipe, a terminal) is written as it is. Safe for concurrent use.
func Capped(f *os.File, limit, keep int64) io.Writer {
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return f
	}
	return &capped{f: f, limit: limit, keep: min(keep, limit/2), size: fi.Size()}
}

type capped struct {
	mu          sync.Mutex
	f           *os.File
	limit, keep int64
	size        int64
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.size+int64(len(p)) > c.limit {
		c.cut()
	}
	n, err := c.f.Write(p)
	c.size += int64(n)
	return n, err
}

// cut leaves the file's last keep bytes, from the first line start among
// them, after a line saying how much was cut.
func (c *capped) cut() {
	fi, err := c.f.Stat()
	if err != nil {
		return
	}
	size := fi.Size()
	from := max(size-c.keep, 0)
	tail := make([]byte, size-from)
	if _, err := c.f.ReadAt(tail, from); err != nil && err != io.EOF {
		tail = nil // a descriptor that cannot read: cut it all
	}
	if i := bytes.IndexByte(tail, '\n'); from > 0 && i >= 0 {
		tail = tail[i+1:]
	}
	if err := c.f.Truncate(0); err != nil {
		c.size = 0 // not cut: try again after another limit's worth
		return
	}
	head := fmt.Appendf(nil, "(log cut: %d earlier bytes dropped to keep this file under %d bytes)\n", size-int64(len(tail)), c.limit)
	n, _ := c.f.Write(append(head, tail...))
	c.size = int64(n)
}
