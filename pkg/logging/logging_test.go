package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestNew: json writes one object per line with the attributes, text
// writes key=value, the level filters, and unknown values are refused.
func TestNew(t *testing.T) {
	var buf bytes.Buffer
	log, err := New(&buf, JSON, "warn")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("dropped")
	log.Warn("kept", "volume", "pvc-1", "pod", "team-a/trainer-0")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("not one JSON object: %q: %v", buf.String(), err)
	}
	if rec["msg"] != "kept" || rec["volume"] != "pvc-1" || rec["pod"] != "team-a/trainer-0" || rec["level"] != "WARN" {
		t.Fatalf("record %v", rec)
	}
	buf.Reset()
	log, err = New(&buf, "", "")
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("dropped")
	log.Info("kept", "volume", "pvc-1")
	if got := buf.String(); !strings.Contains(got, "msg=kept volume=pvc-1") || strings.Contains(got, "dropped") {
		t.Fatalf("text: %q", got)
	}
	if _, err := New(&buf, "xml", ""); err == nil {
		t.Fatal("format xml accepted")
	}
	if _, err := New(&buf, "", "loud"); err == nil {
		t.Fatal("level loud accepted")
	}
}
