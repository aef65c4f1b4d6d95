package cachejournal

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestDetachKeepsTheNewFile: a file held open by a reader while its name
// is unlinked and written again, or renamed onto, is closed after the new
// file was closed. rclone then saves the old file's metadata over the new
// one's, clean: rclone and a journal without Detach lose the new file
// when the server dies before its upload (Sweep, then Repair, drop its
// record; rclone uploads nothing). With Detach before the unlink or
// rename, Sweep keeps the record, and the new file is uploaded after a
// kill before the Reattach (which the server makes only once the new file
// is uploaded: fuseserver's detachFS).
func TestDetachKeepsTheNewFile(t *testing.T) {
	want := bytes.Repeat([]byte("new "), 50_000)
	for _, replace := range []string{"unlink", "rename"} {
		for _, mode := range []string{"no-detach", "detached"} {
			t.Run(replace+"/"+mode, func(t *testing.T) {
				e := newEnv(t)
				old := e.existing(t, "f", 1<<20, 'O')
				j, err := Open(e.Cache, e.F)
				if err != nil {
					t.Fatal(err)
				}
				v := e.startVFS(t, time.Hour)
				reader, err := v.OpenFile("f", os.O_RDONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := reader.ReadAt(make([]byte, 4096), 0); err != nil {
					t.Fatal(err)
				}
				if mode != "no-detach" {
					if err := j.Detach("f"); err != nil {
						t.Fatal(err)
					}
				}
				switch replace {
				case "unlink":
					if err := v.Remove("f"); err != nil {
						t.Fatal(err)
					}
					if err := j.Removed("f"); err != nil {
						t.Fatal(err)
					}
					write(t, v, j, "f", want)
				case "rename":
					write(t, v, j, "tmp", want)
					done, err := j.Renaming("tmp", "f")
					if err != nil {
						t.Fatal(err)
					}
					if err := v.Rename("tmp", "f"); err != nil {
						t.Fatal(err)
					}
					if err := done(true); err != nil {
						t.Fatal(err)
					}
				}
				if err := reader.Close(); err != nil {
					t.Fatal(err)
				}
				if info, err := j.cache.Info("f"); err != nil || info.Dirty {
					t.Fatalf("the new file's metadata after the old file's close: %+v, %v; rclone no longer saves a detached item's metadata there: revisit Detach", info, err)
				}
				j.Sweep(nil) // the new file is queued for upload: nothing tells Sweep
				if _, kept := j.written["f"]; kept != (mode != "no-detach") {
					t.Fatalf("Sweep kept the record: %v", kept)
				}
				v.Stop() // the server dies with the upload pending
				if j, err = Open(e.Cache, e.F); err != nil {
					t.Fatal(err)
				}
				j.Repair()
				if j.Detached("f") {
					t.Fatal("a Detach outlived Repair")
				}
				e.startVFS(t, 10*time.Millisecond)
				if mode != "no-detach" {
					e.waitUploaded(t, "f", want)
					return
				}
				// The loss Detach prevents: what the bucket holds a
				// while after a restart that would upload within
				// milliseconds.
				time.Sleep(time.Second)
				got, err := os.ReadFile(filepath.Join(e.Remote, "f"))
				if replace == "unlink" && !os.IsNotExist(err) || replace == "rename" && !bytes.Equal(got, old) {
					t.Fatalf("without Detach the bucket holds %d bytes (%v): rclone no longer loses the file, revisit Detach", len(got), err)
				}
			})
		}
	}
}

// TestDetachMarksReplay: Detach marks count, survive a reopen of the
// journal (a killed server) until their Reattach, and do not outlive
// Repair; neither touches the metadata.
func TestDetachMarksReplay(t *testing.T) {
	e := newEnv(t)
	j, err := Open(e.Cache, e.F)
	if err != nil {
		t.Fatal(err)
	}
	v := e.startVFS(t, time.Hour)
	write(t, v, j, "f", []byte("data"))
	before, err := os.ReadFile(j.cache.MetaPath("f"))
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []func() error{
		func() error { return j.Detach("f") },
		func() error { return j.Detach("f") },
		func() error { return j.Reattach("f") },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	reopen := func() {
		t.Helper()
		if j, err = Open(e.Cache, e.F); err != nil {
			t.Fatal(err)
		}
	}
	reopen()
	if !j.Detached("f") {
		t.Fatal("one of two Detach marks lost at a reopen")
	}
	if err := j.Reattach("f"); err != nil {
		t.Fatal(err)
	}
	reopen()
	if j.Detached("f") {
		t.Fatal("a Detach mark outlived its Reattach")
	}
	if after, err := os.ReadFile(j.cache.MetaPath("f")); err != nil || !bytes.Equal(after, before) {
		t.Fatalf("metadata changed by the marks: %s -> %s (%v)", before, after, err)
	}
	if err := j.Detach("g"); err != nil {
		t.Fatal(err)
	}
	v.Stop()
	reopen()
	j.Repair()
	reopen()
	if j.Detached("g") {
		t.Fatal("a Detach mark outlived Repair")
	}
}
