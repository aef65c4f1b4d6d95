package copier

import (
	"bufio"
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

// manifest is an append-only JSON-lines log of completed files, so an
// interrupted copy resumes without fetching finished files again.
type manifest struct {
	mu      sync.Mutex
	path    string
	entries map[string]entry
	w       *os.File
}

func openManifest(path string) (*manifest, error) {
	m := &manifest{path: path, entries: map[string]entry{}}
	if f, err := os.Open(path); err == nil {
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var e entry
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				m.entries[e.Path] = e
			}
		}
		f.Close()
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	// Rewrite compacted, then append.
	tmp := path + ".tmp"
	w, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	enc := json.NewEncoder(w)
	for _, e := range m.entries {
		if err := enc.Encode(e); err != nil {
			w.Close()
			return nil, err
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		w.Close()
		return nil, err
	}
	m.w = w
	return m, nil
}

func (m *manifest) get(path string) (entry, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[path]
	return e, ok
}

func (m *manifest) add(e entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.entries[e.Path] = e
	return json.NewEncoder(m.w).Encode(e)
}

func (m *manifest) close() error {
	if err := m.w.Sync(); err != nil {
		m.w.Close()
		return err
	}
	return m.w.Close()
}
