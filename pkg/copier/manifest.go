package copier

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"sync"
)

// entry records one file the copy completed: the object's fingerprint and
// the local file's size and mtime right after the download. A later copy
// skips the file while all of them still match.
type entry struct {
	Path        string `json:"path"`
	Fingerprint string `json:"fp"`
	Size        int64  `json:"size"`
	MTimeNanos  int64  `json:"mtime"`
}

// The manifest is an append-only JSON-lines log of completed files, so an
// interrupted copy resumes without fetching finished files again. A copy
// reads the previous one into a sorter (readManifest), writes a new one
// holding the entries still valid (newManifest, commit) and appends each
// file it finishes; memory never holds the whole manifest.

// readManifest adds every entry of the manifest at path to s, numbered in
// file order (a later line about the same path wins). A missing manifest
// is empty; unreadable lines are ignored (a torn last line after a crash).
func readManifest(path string, s *sorter) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for seq := int64(0); sc.Scan(); seq++ {
		var e entry
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		if err := s.add(record{Path: e.Path, FP: e.Fingerprint, Size: e.Size, MTime: e.MTimeNanos, Seq: seq}); err != nil {
			return err
		}
	}
	return sc.Err()
}

// manifest writes a new manifest, each line counted by its meter before
// it is written; add is safe for concurrent use.
type manifest struct {
	mu   sync.Mutex
	path string
	f    *os.File
	w    *bufio.Writer
	m    *meter
	line bytes.Buffer
	enc  *json.Encoder
	// committed is set once the new manifest is in place; until then
	// close removes it, so a copy that failed leaves the old one alone.
	committed bool
}

// newManifest starts the manifest that replaces the one at path; the old
// one stays in place until commit.
func newManifest(path string, m *meter) (*manifest, error) {
	f, err := os.OpenFile(path+".tmp", os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	man := &manifest{path: path, f: f, w: bufio.NewWriterSize(f, 64<<10), m: m}
	man.enc = json.NewEncoder(&man.line)
	return man, nil
}

// commit makes what was written so far the manifest at path; later adds
// go straight to it.
func (m *manifest) commit() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.w.Flush(); err != nil {
		return err
	}
	if err := m.f.Sync(); err != nil {
		return err
	}
	if err := os.Rename(m.path+".tmp", m.path); err != nil {
		return err
	}
	m.committed = true
	return nil
}

func (m *manifest) add(e entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.line.Reset()
	if err := m.enc.Encode(e); err != nil {
		return err
	}
	if err := m.m.grow(int64(m.line.Len())); err != nil {
		return err
	}
	if _, err := m.w.Write(m.line.Bytes()); err != nil {
		return err
	}
	// Flushed at once: a crash loses no finished file's entry.
	return m.w.Flush()
}

func (m *manifest) close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	err := m.w.Flush()
	if serr := m.f.Sync(); err == nil {
		err = serr
	}
	if cerr := m.f.Close(); err == nil {
		err = cerr
	}
	if !m.committed {
		if rerr := os.Remove(m.path + ".tmp"); err == nil {
			err = rerr
		}
	}
	return err
}
