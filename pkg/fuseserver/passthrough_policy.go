package fuseserver

import "sync/atomic"

// smallWrite is the size under which a written file counts as small: a
// passthrough writer costs a new file about half a millisecond of the
// server's CPU beyond a create through rclone (its own file made and put
// in place at the create, a byte written through rclone at the end), and
// saves about 0.9 ms a MB of writes the server would otherwise pass on
// (0.36 against 1.23 ms per MB on this project's bench machine): a file
// of roughly half a MB breaks even (docs/benchmarks.md, "Small files
// written").
const smallWrite = 512 << 10

// smallRun is how many small files written one after another make new
// files go through the server.
const smallRun = 8

// writerPolicy decides, from the sizes of the files last written on a
// volume, whether a new file may become a passthrough writer
// (passthrough_writer.go): not while the last smallRun files written
// were all under smallWrite, as when a program writes many small outputs
// one by one, for whom a writer's cost per file is not earned back. A
// file of smallWrite or more, written either way, lets the next new file
// be a writer again, so a large file among small ones costs at most one
// file written through the server.
//
// It only chooses the way a file's writes go: the bytes, the upload
// order and fsync's durability are the same both ways. Safe for
// concurrent use; files written side by side are counted in the order
// their writes end.
type writerPolicy struct {
	small atomic.Int64 // small files written since the last large one
	// declined counts the new files written through the server because
	// the files before them were small.
	declined atomic.Int64
}

// grant reports whether a new file may become a writer, counting it as
// declined when not.
func (w *writerPolicy) grant() bool {
	if w.small.Load() < smallRun {
		return true
	}
	w.declined.Add(1)
	return false
}

// wrote notes a file written (its writes ended) of size bytes.
func (w *writerPolicy) wrote(size int64) {
	if size >= smallWrite {
		w.small.Store(0)
	} else {
		w.small.Add(1)
	}
}
