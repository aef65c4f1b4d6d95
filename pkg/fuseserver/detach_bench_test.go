package fuseserver

import (
	"fmt"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// createsFS answers every CREATE with a new node under the root and every
// RELEASE with nothing: what is left to time is the layer above it.
type createsFS struct {
	fuse.RawFileSystem
	next uint64
}

func (c *createsFS) Create(_ <-chan struct{}, _ *fuse.CreateIn, _ string, out *fuse.CreateOut) fuse.Status {
	c.next++
	out.NodeId, out.Fh = c.next+1, c.next
	return fuse.OK
}

func (c *createsFS) Release(<-chan struct{}, *fuse.ReleaseIn) {}

// BenchmarkDetachCreateRelease times what detachFS adds to a new file's
// CREATE (write-only, as SmallWrites creates its files) and last
// RELEASE against the same calls without it ("bare"), with no mark
// living and with one of another name (a file removed with its upload
// still pending: the release compares, and settles nothing).
func BenchmarkDetachCreateRelease(b *testing.B) {
	for _, c := range []struct {
		name   string
		detach bool
		marks  int
	}{{"bare", false, 0}, {"detach", true, 0}, {"detach-1-mark", true, 1}} {
		b.Run(c.name, func(b *testing.B) {
			track := newTrackFS(&createsFS{RawFileSystem: fuse.NewDefaultRawFileSystem()})
			var raw fuse.RawFileSystem = track
			if c.detach {
				d := newDetachFS(track, nil, &track.paths, nil, nil)
				for i := range c.marks {
					d.marks = append(d.marks, &detachMark{path: fmt.Sprintf("gone-%d", i)})
				}
				raw = d
			}
			in := &fuse.CreateIn{InHeader: fuse.InHeader{NodeId: 1}, Flags: syscall.O_WRONLY | syscall.O_CREAT | syscall.O_TRUNC}
			var out fuse.CreateOut
			b.ReportAllocs()
			for b.Loop() {
				if st := raw.Create(nil, in, "w", &out); !st.Ok() {
					b.Fatal(st)
				}
				raw.Release(nil, &fuse.ReleaseIn{InHeader: fuse.InHeader{NodeId: out.NodeId}, Fh: out.Fh})
				raw.Forget(out.NodeId, 1)
			}
		})
	}
}
