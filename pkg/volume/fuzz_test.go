package volume

import (
	"errors"
	"strings"
	"testing"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
)

// FuzzParseID: decoding never panics, accepts only canonical IDs within the
// length limit, and a decoded ID encodes back to itself.
func FuzzParseID(f *testing.F) {
	for _, s := range []string{"v1:s3:Mpn:0123456789ab:bucket/pre/fix", "v1:azure:Kes:-:cont@acct/p", "v1:s3:Cps:0123456789ab:b/p", "v1:oci:Cps:-:B_1@us-ashburn-1", "some-vol-id", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		h, err := ParseID(kinds, id)
		if err != nil {
			if !errors.Is(err, fault.NotFound) {
				t.Fatalf("ParseID(%q) error %v is not fault.NotFound", id, err)
			}
			return
		}
		again, err := h.ID()
		if err != nil || again != id || len(id) > MaxIDLength {
			t.Fatalf("ParseID(%q) accepted a non-canonical ID (re-encoded %q, %v)", id, again, err)
		}
		if strings.Contains(h.Prefix, "..") && strings.Contains("/"+h.Prefix+"/", "/../") {
			t.Fatalf("ParseID(%q) accepted a prefix with ..", id)
		}
	})
}

// FuzzParseSource: parsing never panics; accepted locations have a valid
// bucket for their store and a clean prefix.
func FuzzParseSource(f *testing.F) {
	for _, s := range []string{"s3://bucket/prefix", "gs://b_1.x/a", "https://acct.blob.core.windows.net/c/p", "cos://us-east/b", "oci://B@us-ashburn-1/p", "r2://b", "nebius://b", "~/data", "s3://a/../b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		loc, err := ParseSource(kinds, uri)
		if err != nil {
			if !errors.Is(err, fault.Invalid) {
				t.Fatalf("ParseSource(%q) error %v is not fault.Invalid", uri, err)
			}
			return
		}
		if ValidateBucket(kinds, loc.Store, loc.Bucket) != nil {
			t.Fatalf("ParseSource(%q) accepted bucket %q for %s", uri, loc.Bucket, loc.Store)
		}
		if p, err := CleanPrefix(loc.Prefix); err != nil || p != loc.Prefix {
			t.Fatalf("ParseSource(%q) accepted prefix %q", uri, loc.Prefix)
		}
	})
}

// FuzzParse: any attribute map either parses to a Spec that encodes into a
// valid ID (or is refused as too long), or is refused with fault.Invalid.
func FuzzParse(f *testing.F) {
	f.Add("s3://bucket/p", "", "", "MOUNT", "true")
	f.Add("", "my-bucket", "gcs", "copy", "false")
	f.Add("", "", "", "MOUNT_CACHED", "")
	f.Fuzz(func(t *testing.T, source, name, store, mode, persistent string) {
		attrs := map[string]string{}
		for k, v := range map[string]string{KeySource: source, KeyName: name, KeyStore: store, KeyMode: mode, KeyPersistent: persistent} {
			if v != "" {
				attrs[k] = v
			}
		}
		spec, err := Parse(attrs, Defaults{Kinds: kinds, Store: "s3"}, "derived-name")
		if err != nil {
			if !errors.Is(err, fault.Invalid) {
				t.Fatalf("Parse(%v) error %v is not fault.Invalid", attrs, err)
			}
			return
		}
		h := Handle{Spec: spec, NameHash: NameHash(name)}
		id, err := h.ID()
		if err != nil {
			if !errors.Is(err, fault.Invalid) {
				t.Fatalf("ID() error %v is not fault.Invalid", err)
			}
			return
		}
		back, err := ParseID(kinds, id)
		if err != nil || back != h {
			t.Fatalf("spec %+v: ID %q does not round-trip: %+v %v", spec, id, back, err)
		}
	})
}

// FuzzParseMountFlags: parsing never panics; only the documented options
// are ever accepted.
func FuzzParseMountFlags(f *testing.F) {
	for _, s := range []string{"ro", "uid=1000,gid=1000", "umask=022", "exec", "dir-cache-time=5s", "allow_other", "--vfs-cache-mode=full", "config=/etc/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, flag string) {
		if _, err := ParseMountFlags([]string{flag}); err != nil {
			if !errors.Is(err, fault.Invalid) {
				t.Fatalf("ParseMountFlags(%q) error %v is not fault.Invalid", flag, err)
			}
			return
		}
		for _, opt := range strings.Split(flag, ",") {
			key, _, _ := strings.Cut(strings.TrimSpace(opt), "=")
			switch key {
			case "", "ro", "exec", "rw", "defaults", "nosuid", "nodev", "uid", "gid", "umask", "dir-cache-time":
			default:
				t.Fatalf("ParseMountFlags(%q) accepted option %q", flag, key)
			}
		}
	})
}
