package volume

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// DeriveBucketName turns a PV (or CSI volume) name into a bucket name valid
// for every store: prefix + the name lowercased with anything outside
// [a-z0-9-] replaced by '-'. When that changed the name or made it too long,
// a hash of the original is appended so two different names never map to one
// bucket. The result is deterministic, which keeps CreateVolume idempotent.
func DeriveBucketName(prefix, name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	clean := strings.Trim(prefix+b.String(), "-")
	for strings.Contains(clean, "--") {
		clean = strings.ReplaceAll(clean, "--", "-")
	}
	const max = 63
	if clean == prefix+name && len(clean) <= max && len(clean) >= 3 {
		return clean
	}
	sum := sha256.Sum256([]byte(name))
	suffix := "-" + hex.EncodeToString(sum[:4])
	if len(clean) > max-len(suffix) {
		clean = strings.TrimRight(clean[:max-len(suffix)], "-")
	}
	return clean + suffix
}
