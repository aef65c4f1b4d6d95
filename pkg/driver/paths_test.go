package driver

import (
	"errors"
	"testing"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
)

func TestCheckPath(t *testing.T) {
	for p, ok := range map[string]bool{
		"/var/lib/kubelet/pods/uid/volumes/kubernetes.io~csi/pv/mount":              true,
		"/var/lib/kubelet/plugins/kubernetes.io/csi/bucket.csi.io/abc/globalmount/": true,
		"relative/path": false, "/var/lib/../etc": false, "/a//b": false, "/a/./b": false,
		"/": false, "/a\nb": false, "": false,
	} {
		err := checkPath("target_path", p)
		if (err == nil) != ok || (err != nil && !errors.Is(err, fault.Invalid)) {
			t.Errorf("checkPath(%q) = %v, want ok=%v", p, err, ok)
		}
	}
}
