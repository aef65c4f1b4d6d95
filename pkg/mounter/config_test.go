package mounter

import "testing"

// The rclone remote name (and with it the VFS cache directory holding
// pending uploads) must depend on the volume only: a rotated secret must
// find the same cache.
func TestSectionIgnoresCredentials(t *testing.T) {
	a := Config{VolumeID: "v1:s3:Kpn:0123456789ab:b", Bucket: "b", Remote: map[string]string{"type": "s3", "secret_access_key": "old"}}
	b := a
	b.Remote = map[string]string{"type": "s3", "secret_access_key": "rotated"}
	if a.section() != b.section() || a.remotePath() != b.remotePath() {
		t.Fatalf("remote changes with credentials: %s vs %s", a.remotePath(), b.remotePath())
	}
	c := a
	c.VolumeID = "v1:s3:Kpn:0123456789ac:b"
	if a.section() == c.section() {
		t.Fatal("two volumes share a remote name (and a cache directory)")
	}
}
