package logging

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCappedKeepsTheFileSmall: 1,000 lines of about 1 KiB through a
// writer capped at 20 KiB leave a file under the cap plus one line, that
// says it was cut, holds whole lines only, and ends with the last line.
func TestCappedKeepsTheFileSmall(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mounter.log")
	// As the supervisor opens it for the server's stderr.
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := Capped(f, 20<<10, 4<<10)
	pad := strings.Repeat("x", 1000)
	for i := range 1000 {
		if _, err := fmt.Fprintf(w, "line %04d %s\n", i, pad); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 20<<10+1100 {
		t.Fatalf("log of %d bytes, cap 20 KiB", len(data))
	}
	if !bytes.HasPrefix(data, []byte("(log cut: ")) {
		t.Fatalf("the log does not say it was cut: %.60q", data)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l, "line ") || len(l) != len("line 0000 ")+1000 {
			t.Fatalf("a partial line kept: %.40q (%d bytes)", l, len(l))
		}
	}
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "line 0999 ") {
		t.Fatalf("last line %.20q, want line 0999", last)
	}
}
