package fuseserver

import "testing"

// TestWriterPolicyDeclinesAfterARunOfSmallFiles: writers are granted
// until smallRun small files in a row were written, declined (and
// counted) after, and granted again once one large file was written,
// whichever way it went; a large file inside the run starts it anew.
func TestWriterPolicyDeclinesAfterARunOfSmallFiles(t *testing.T) {
	var w writerPolicy
	for i := range smallRun - 1 {
		if !w.grant() {
			t.Fatalf("declined after %d small files, want granted until %d", i, smallRun)
		}
		w.wrote(smallWrite - 1)
	}
	w.wrote(smallWrite) // a large file: the run starts anew
	for i := range smallRun {
		if !w.grant() {
			t.Fatalf("declined after a large file and %d small ones", i)
		}
		w.wrote(0)
	}
	for range 3 {
		if w.grant() {
			t.Fatalf("granted after %d small files in a row", smallRun)
		}
		w.wrote(100)
	}
	if n := w.declined.Load(); n != 3 {
		t.Fatalf("%d declined counted, want 3", n)
	}
	w.wrote(10 << 20)
	if !w.grant() {
		t.Fatal("declined right after a large file")
	}
	if n := w.declined.Load(); n != 3 {
		t.Fatalf("%d declined counted after a grant, want 3", n)
	}
}
