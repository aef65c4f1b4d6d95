// Package atomicfile writes small files that must never be seen half
// written: node state records and ledgers that a crashed or restarted
// plugin reads back.
package atomicfile

import (
	"encoding/json"
	"os"
	"path/filepath"
)

// WriteJSON replaces path with v as indented JSON, as Write does.
func WriteJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return Write(path, data)
}

// Write replaces path with data: a 0600 temporary file in the same
// directory, synced, then renamed over path. A reader sees the old file or
// the new one, never a mix, also after a crash.
func Write(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
