package test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// jsonLines parses text as one JSON object per line, failing on any
// other line.
func jsonLines(t *testing.T, what, text string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("%s: a line that is not JSON: %q", what, line)
		}
		out = append(out, rec)
	}
	return out
}

// TestLogFormatJSON: with --log-format json and --log-level debug, every
// line of the driver and of the FUSE server is a JSON object; the
// driver's call lines carry the PV and pod, the server's the volume and
// PV; and the debug level reaches the server.
func TestLogFormatJSON(t *testing.T) {
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t, "--log-format", "json", "--log-level", "debug")
	pv := "pvc-json-logs"
	v, staging, target := publishedPV(t, c, drv, s3, pv, map[string]string{"mode": "MOUNT"}, "app-0")
	id := v.id
	if _, err := os.ReadDir(target); err != nil {
		t.Fatal(err)
	}
	var publish map[string]any
	for _, rec := range jsonLines(t, "driver log", drv.Log.String()) {
		if rec["msg"] == "call" && strings.HasSuffix(rec["method"].(string), "/NodePublishVolume") {
			publish = rec
		}
	}
	if publish == nil || publish["pv"] != pv || publish["pod"] != "team-a/app-0" || publish["volume"] != id {
		t.Fatalf("NodePublishVolume log line: %v", publish)
	}
	staged := drv.Staged(t)
	if len(staged) != 1 {
		t.Fatalf("staged: %+v", staged)
	}
	data, err := os.ReadFile(filepath.Join(staged[0].StateDir, "mounter.log"))
	if err != nil {
		t.Fatal(err)
	}
	var mounted, debug bool
	for _, rec := range jsonLines(t, "FUSE server log", string(data)) {
		if rec["volume"] != id || rec["pv"] != pv {
			t.Fatalf("FUSE server line without its volume and PV: %v", rec)
		}
		mounted = mounted || rec["msg"] == "mounted"
		debug = debug || rec["level"] == "DEBUG"
	}
	if !mounted || !debug {
		t.Fatalf("FUSE server log: mounted line %v, debug lines %v", mounted, debug)
	}
	unpublish(t, c, id, staging, target)
}
