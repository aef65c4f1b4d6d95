package fuseproto

import (
	"fmt"
	"strings"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
)

// StatusFD is the file descriptor on which a server reports readiness:
// one line, OKLine or an ErrorLine, then the descriptor is closed.
const StatusFD = 3

// OKLine reports that the mount is live.
const OKLine = "ok"

// errorPrefix starts an error line; servers before fault kinds wrote
// "error: <text>", the same prefix with no kind.
const errorPrefix = "error"

// ErrorLine is the status line reporting err: "error <kind>: <text>",
// with err's pkg/fault kind (none when it has none) and its text on one
// line. The caller masks secrets in err's text first (the line leaves
// the process).
func ErrorLine(err error, text string) string {
	kind := fault.Kind(err)
	text = strings.TrimPrefix(strings.ReplaceAll(text, "\n", " "), kind+": ")
	if kind == "" {
		return errorPrefix + ": " + text
	}
	return errorPrefix + " " + kind + ": " + text
}

// ParseStatusLine reads a status line (without its newline): nil for
// OKLine, else an error of the line's fault kind, fault.Unavailable when
// it names none or an unknown one (a server that exited before reporting
// writes nothing: ""). The text is the server's, already masked.
func ParseStatusLine(line string) error {
	line = strings.TrimSpace(line)
	switch {
	case line == OKLine:
		return nil
	case line == "":
		return fmt.Errorf("%w: the FUSE server exited before mounting", fault.Unavailable)
	}
	head, text, found := strings.Cut(line, ": ")
	if !found || !strings.HasPrefix(head, errorPrefix) {
		return fmt.Errorf("%w: FUSE server: unexpected status %q", fault.Unavailable, line)
	}
	kind := fault.FromKind(strings.TrimSpace(strings.TrimPrefix(head, errorPrefix)))
	if kind == nil {
		kind = fault.Unavailable
	}
	return fmt.Errorf("%w: FUSE server: %s", kind, text)
}
