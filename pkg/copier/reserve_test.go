package copier

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestCopyReservesBeforeDownloading: Options.Space is called once with
// the whole size of the finished copy (files already there included); a
// refusal downloads nothing and is returned as is.
func TestCopyReservesBeforeDownloading(t *testing.T) {
	f := memFs(t, map[string][]byte{"a": random(t, 1000), "b/c": random(t, 234)})
	root := t.TempDir()
	dest, man := filepath.Join(root, "data"), filepath.Join(root, "manifest")
	var asked []int64
	refuse := errors.New("no room")
	opt := Options{Space: func(_ context.Context, _ string, total, _ int64) error { asked = append(asked, total); return refuse }}
	if _, err := Copy(context.Background(), f, dest, man, opt, &Progress{}); !errors.Is(err, refuse) {
		t.Fatalf("refused copy = %v", err)
	}
	if entries, _ := os.ReadDir(dest); len(entries) != 0 || len(asked) != 1 || asked[0] != 1234 {
		t.Fatalf("refused copy: %d entries in dest, Space asked %v (want once for 1234)", len(entries), asked)
	}
	opt.Space = func(_ context.Context, _ string, total, _ int64) error { asked = append(asked, total); return nil }
	for range 2 {
		if _, err := Copy(context.Background(), f, dest, man, opt, &Progress{}); err != nil {
			t.Fatal(err)
		}
	}
	if len(asked) != 3 || asked[1] != 1234 || asked[2] != 1234 {
		t.Fatalf("Space asked %v; an up-to-date copy must ask for its whole size again", asked)
	}
}
