package fuseserver

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/rclone/rclone/vfs"

	"github.com/bucket-csi/bucket-csi/pkg/readahead"
)

// streamFS serves the reads of MOUNT volumes' read-only handles itself,
// from the read-ahead (readahead.Object.OpenAt), instead of through
// rclone's ReadFileHandle. The kernel sends a file's read requests
// concurrently and so out of order; rclone serves them strictly in order
// and makes one that arrives early wait up to its --vfs-read-wait (20 ms)
// for the others, then seeks. Here a request is served wherever it falls
// in the read-ahead's window, and a request inside one block is answered
// from the block itself, without copying it into a reply buffer.
//
// Contract:
//   - Only opens for reading alone of a file the VFS has an object for
//     are served here; every other open, and every other operation, goes
//     to rclone as before. rclone still opens its own handle for the file
//     (it fetches nothing until its first read, which never comes) and
//     releases it.
//   - Reads of one handle are served concurrently, as the kernel sends
//     them: each waits only for its own bytes.
//   - Their opens are answered with FOPEN_NOFLUSH: the kernel sends no
//     FLUSH at their closes. rclone's flush of a read handle checks the
//     hash of what it read and does nothing else, and its handle reads
//     nothing here; the server asks for neither POSIX locks (go-fuse's
//     EnableLocks is off: the kernel keeps them) nor a writeback cache.
//     For a reader of small files the FLUSH was one synchronous round
//     trip of four per file (docs/benchmarks.md).
//   - What a read returns is the object as the store serves it; a short
//     or failed GET fails the read with EIO, as rclone's does.
type streamFS struct {
	fuse.RawFileSystem
	v     *vfs.VFS
	paths *pathTable
	log   *slog.Logger

	mu      sync.Mutex
	handles map[uint64]readahead.At
}

func newStreamFS(inner fuse.RawFileSystem, paths *pathTable, v *vfs.VFS, log *slog.Logger) *streamFS {
	return &streamFS{RawFileSystem: inner, v: v, paths: paths, log: log, handles: map[uint64]readahead.At{}}
}

func (s *streamFS) Open(c <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	st := s.RawFileSystem.Open(c, in, out)
	if !st.Ok() || in.Flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return st
	}
	if at := s.openAt(in.NodeId); at != nil {
		out.OpenFlags |= fuse.FOPEN_NOFLUSH // see the contract above
		s.mu.Lock()
		s.handles[out.Fh] = at
		s.mu.Unlock()
	}
	return st
}

// openAt opens node id's object for ReadAt; nil when the node has no
// known path or no object of the read-ahead (rclone serves it then).
func (s *streamFS) openAt(id uint64) readahead.At {
	p, ok := s.paths.path(id)
	if !ok {
		return nil
	}
	node, err := s.v.Stat(p)
	if err != nil {
		return nil
	}
	o, ok := node.DirEntry().(*readahead.Object)
	if !ok || o == nil {
		return nil
	}
	at, err := o.OpenAt(context.Background())
	if err != nil {
		return nil
	}
	return at
}

func (s *streamFS) Read(c <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	s.mu.Lock()
	at := s.handles[in.Fh]
	s.mu.Unlock()
	if at == nil {
		return s.RawFileSystem.Read(c, in, buf)
	}
	data, release, err := at.ReadAt(buf[:min(int(in.Size), len(buf))], int64(in.Offset))
	if errors.Is(err, io.EOF) {
		return fuse.ReadResultData(nil), fuse.OK
	}
	if err != nil {
		s.log.Warn("read failed", "node", in.NodeId, "offset", in.Offset, "size", in.Size, "err", err)
		return nil, fuse.EIO
	}
	if len(data) == 0 {
		// go-fuse calls Done only for a reply with data.
		release()
		return fuse.ReadResultData(nil), fuse.OK
	}
	return heldResult{data: data, release: release}, fuse.OK
}

func (s *streamFS) Release(c <-chan struct{}, in *fuse.ReleaseIn) {
	s.mu.Lock()
	at := s.handles[in.Fh]
	delete(s.handles, in.Fh)
	s.mu.Unlock()
	if at != nil {
		at.Close()
	}
	s.RawFileSystem.Release(c, in)
}

// heldResult is a read's reply whose bytes stay held until the server
// has written them to the kernel (go-fuse calls Done after the write).
type heldResult struct {
	data    []byte
	release func()
}

func (r heldResult) Bytes([]byte) ([]byte, fuse.Status) { return r.data, fuse.OK }
func (r heldResult) Size() int                          { return len(r.data) }
func (r heldResult) Done()                              { r.release() }
