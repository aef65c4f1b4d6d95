// Package deprules checks the dependency rules of docs/architecture.md
// against the packages' real imports (`go list -deps`), so a change that
// breaks one fails `make unit`-style runs of `go test ./...`.
package deprules

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/bucket-csi/bucket-csi/"

// TestDependencyRules: every package matching a rule's pattern depends,
// directly or through others, on no import path with a forbidden prefix.
func TestDependencyRules(t *testing.T) {
	rules := []struct {
		pattern, why string
		forbidden    []string
	}{
		{module + "pkg/volume", "volume is pure parsing: it never imports rclone or a store SDK",
			[]string{"github.com/rclone/", "github.com/aws/", "cloud.google.com/", "github.com/Azure/", "github.com/oracle/", module + "pkg/stores"}},
		{module + "pkg/store/...", "a store never imports stage, driver, the mounter or node state",
			[]string{module + "pkg/stage", module + "pkg/driver", module + "pkg/mounter", module + "pkg/fuseserver", module + "pkg/nodestate"}},
		{module + "pkg/stores", "the registry of stores knows only the store packages",
			[]string{module + "pkg/stage", module + "pkg/driver", module + "pkg/mounter", module + "pkg/fuseserver", module + "pkg/volume"}},
		{module + "pkg/fuseserver", "the FUSE server never imports the driver, the stagers, node state or its supervisor",
			[]string{module + "pkg/driver", module + "pkg/stage", module + "pkg/nodestate", module + "pkg/mounter"}},
		{module + "pkg/mounter", "the supervisor never imports the FUSE server (it runs it as a process), the driver or the stagers",
			[]string{module + "pkg/fuseserver", module + "pkg/driver", module + "pkg/stage"}},
		{module + "pkg/fuseproto", "the FUSE protocol imports neither side",
			[]string{module + "pkg/fuseserver", module + "pkg/mounter", module + "pkg/driver", module + "pkg/stage"}},
		{module + "pkg/bucket", "bucket ownership rules never import rclone, stage or driver",
			[]string{"github.com/rclone/", module + "pkg/stage", module + "pkg/driver"}},
	}
	for _, r := range rules {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", r.pattern).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", r.pattern, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range r.forbidden {
				if strings.HasPrefix(dep, f) {
					t.Errorf("%s depends on %s: %s", r.pattern, dep, r.why)
				}
			}
		}
	}
}
