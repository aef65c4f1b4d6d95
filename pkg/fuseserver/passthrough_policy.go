package fuseserver

import "sync/atomic"

// smallFile is the size under which a written file counts as small: a
// passthrough writer costs a new file about half a millisecond of the
// server's CPU beyond a create through rclone (its own file made and put
// in place at the create, a byte written through rclone at the end), and
// saves about 0.9 ms a MB of writes the server would otherwise pass on
// (0.36 against 1.23 ms per MB on this project's bench machine): a file
// of roughly half a MB breaks even (docs/benchmarks.md, "Small files
// written").
const smallFile = 512 << 10

// smallRun is how many small files written one after another make new
// files go through the server: more than a checkpoint writes beside its
// large files (configuration, tokenizer, index and state files: about 15
// in a Hugging Face checkpoint), so its next large file stays a writer,
// and few beside the hundreds a program writing many small outputs makes.
const smallRun = 32

// writerPolicy decides, from the sizes of the files last written on a
// volume, whether a new file may become a passthrough writer
// (passthrough_writer.go): not while the last smallRun files written
// were all under smallFile, as when a program writes many small outputs
// one by one, for whom a writer's cost per file is not earned back. The
// files it counts: each passthrough writer's, by its size when the writer
// ends, and each file created through the server, by its size when the
// create's handle is released. Once a file of smallFile or more is
// counted, new files may be writers again; those created before that
// (one after another: the large file itself; side by side: every file
// created while it was written) are written through the server.
//
// It only chooses the way a file's writes go: the bytes, the upload
// order and fsync's durability are the same both ways. Safe for
// concurrent use; of files written side by side, the one whose writer
// ends or whose handle is released last is counted last.
type writerPolicy struct {
	small atomic.Int64 // small files counted since the last large one
	// declined counts the creates the policy kept from being writers
	// (grantWriter adds them).
	declined atomic.Int64
}

// admits reports whether a new file may become a writer.
func (w *writerPolicy) admits() bool { return w.small.Load() < smallRun }

// wrote counts a file written of size bytes.
func (w *writerPolicy) wrote(size int64) {
	if size >= smallFile {
		w.small.Store(0)
	} else {
		w.small.Add(1)
	}
}
