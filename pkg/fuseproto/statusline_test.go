package fuseproto

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
)

// TestStatusLineCarriesKind: a server's error report keeps its fault kind
// across the process boundary (a refused config stays final, a store that
// does not answer stays retryable), on one line; a line without a kind
// (an older server) or no line at all is fault.Unavailable.
func TestStatusLineCarriesKind(t *testing.T) {
	for _, kind := range []error{fault.Invalid, fault.Denied, fault.NotFound, fault.Unavailable, fault.Exhausted} {
		err := fmt.Errorf("opening b/p: %w", fmt.Errorf("%w: bad\nthing", kind))
		line := ErrorLine(err, err.Error())
		if strings.Contains(line, "\n") {
			t.Fatalf("status line spans lines: %q", line)
		}
		got := ParseStatusLine(line)
		if !errors.Is(got, kind) || !strings.Contains(got.Error(), "bad thing") {
			t.Errorf("%v: line %q parsed as %v", kind, line, got)
		}
	}
	wrapped := fmt.Errorf("%w: mounter config: no bucket", fault.Invalid)
	if line := ErrorLine(wrapped, wrapped.Error()); line != "error invalid argument: mounter config: no bucket" {
		t.Errorf("line = %q", line)
	}
	for _, line := range []string{"error: from an older server", "", "garbage", "error nonsense: x"} {
		if err := ParseStatusLine(line); !errors.Is(err, fault.Unavailable) {
			t.Errorf("%q parsed as %v, want unavailable", line, err)
		}
	}
	if err := ParseStatusLine(OKLine); err != nil {
		t.Errorf("ok parsed as %v", err)
	}
	if line := ErrorLine(errors.New("no kind"), "no kind"); line != "error: no kind" {
		t.Errorf("line without a kind = %q", line)
	}
}
