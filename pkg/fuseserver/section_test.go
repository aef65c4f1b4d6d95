package fuseserver

import (
	"testing"

	"github.com/bucket-csi/bucket-csi/pkg/fuseproto"
)

// The rclone remote name (and with it the VFS cache directory holding
// pending uploads) must depend on the volume only: a rotated secret must
// find the same cache.
func TestSectionIgnoresCredentials(t *testing.T) {
	a := fuseproto.Config{VolumeID: "v1:s3:Kpn:0123456789ab:b", Bucket: "b", Remote: map[string]string{"type": "s3", "secret_access_key": "old"}}
	b := a
	b.Remote = map[string]string{"type": "s3", "secret_access_key": "rotated"}
	if section(&a) != section(&b) || remotePath(&a) != remotePath(&b) {
		t.Fatalf("remote changes with credentials: %s vs %s", remotePath(&a), remotePath(&b))
	}
	c := a
	c.VolumeID = "v1:s3:Kpn:0123456789ac:b"
	if section(&a) == section(&c) {
		t.Fatal("two volumes share a remote name (and a cache directory)")
	}
}
