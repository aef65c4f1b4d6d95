package driver

import (
	"fmt"
	"path/filepath"
	"strings"
	"unicode"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
)

// checkPath refuses request paths the driver must never act on: relative
// paths, paths with "." or ".." segments or doubled slashes (anything that
// is not already clean), control characters and over-long paths. Paths
// come from the CO; the driver mounts, creates and removes exactly them.
func checkPath(field, p string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: %s %q %s", fault.Invalid, field, p, why)
	}
	switch {
	case !filepath.IsAbs(p):
		return bad("is not absolute")
	case len(p) > 4000:
		return bad("is too long")
	case strings.IndexFunc(p, unicode.IsControl) >= 0:
		return bad("contains a control character")
	case filepath.Clean(p) != strings.TrimSuffix(p, "/") && p != "/":
		return bad("is not a clean path (\".\", \"..\" or \"//\")")
	case p == "/":
		return bad("is the root directory")
	}
	return nil
}
