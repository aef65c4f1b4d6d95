package fuseserver

import "testing"

// TestWriterPolicyAdmitsUntilARunOfSmallFiles: writers are admitted
// until smallRun small files in a row were counted, not after, and again
// once one large file was counted; a large file inside the run starts it
// anew.
func TestWriterPolicyAdmitsUntilARunOfSmallFiles(t *testing.T) {
	var w writerPolicy
	for i := range smallRun - 1 {
		if !w.admits() {
			t.Fatalf("not admitted after %d small files, want admitted until %d", i, smallRun)
		}
		w.wrote(smallFile - 1)
	}
	w.wrote(smallFile) // a large file: the run starts anew
	for i := range smallRun {
		if !w.admits() {
			t.Fatalf("not admitted after a large file and %d small ones", i)
		}
		w.wrote(0)
	}
	for range 3 {
		if w.admits() {
			t.Fatalf("admitted after %d small files in a row", smallRun)
		}
		w.wrote(100)
	}
	w.wrote(10 << 20)
	if !w.admits() {
		t.Fatal("not admitted right after a large file")
	}
}
