package volume

import (
	"errors"
	"strings"
	"testing"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
)

func TestParse(t *testing.T) {
	def := Defaults{Kinds: kinds, Store: "s3"}
	tests := []struct {
		name    string
		attrs   map[string]string
		derived string
		want    Spec
		errHas  string // "" means success
	}{
		{"source with prefix", map[string]string{"source": "s3://data-set/train/v1/"}, "",
			Spec{Store: "s3", Bucket: "data-set", Prefix: "train/v1", Mode: ModeMount, Persistent: true, Existing: true}, ""},
		{"name and store and mode", map[string]string{"name": "my-out", "store": "s3", "mode": "copy"}, "",
			Spec{Store: "s3", Bucket: "my-out", Mode: ModeCopy, Persistent: true}, ""},
		{"derived name, not persistent", map[string]string{"persistent": "false", "mode": "MOUNT_CACHED"}, "csi-pvc-1",
			Spec{Store: "s3", Bucket: "csi-pvc-1", Mode: ModeMountCached, Persistent: false}, ""},
		{"kubernetes keys ignored", map[string]string{"name": "abc", "csi.storage.k8s.io/pvc/name": "x", "storage.kubernetes.io/csiProvisionerIdentity": "1"}, "",
			Spec{Store: "s3", Bucket: "abc", Mode: ModeMount, Persistent: true}, ""},
		{"azure source", map[string]string{"source": "https://acct01.blob.core.windows.net/cont/p"}, "",
			Spec{Store: "azure", Bucket: "cont", Location: "acct01", Prefix: "p", Mode: ModeMount, Persistent: true, Existing: true}, ""},
		{"unknown key", map[string]string{"nmae": "x"}, "", Spec{}, `key "nmae" is not a volume attribute: accepted: one of mode, name, persistent, profile, source, store`},
		{"query string", map[string]string{"source": "https://acct01.blob.core.windows.net/c?sv=1&sig=SECRET"}, "", Spec{}, "has a query string"},
		{"bad mode", map[string]string{"name": "abc", "mode": "STREAM"}, "", Spec{}, "mode \"STREAM\" is not valid: accepted: MOUNT, COPY, MOUNT_CACHED"},
		{"profile", map[string]string{"source": "s3://abc", "profile": " Dataset "}, "",
			Spec{Store: "s3", Bucket: "abc", Mode: ModeMount, Persistent: true, Existing: true, Profile: ProfileDataset}, ""},
		{"bad profile", map[string]string{"name": "abc", "profile": "fast"}, "", Spec{}, `profile "fast" is not valid: accepted: dataset, checkpoint, small-files`},
		{"bad persistent", map[string]string{"name": "abc", "persistent": "maybe"}, "", Spec{}, `persistent "maybe"`},
		{"bad store", map[string]string{"name": "abc", "store": "dropbox"}, "", Spec{}, "store \"dropbox\" is not valid: accepted: one of azure, gcs, ibm, nebius, oci, r2, s3"},
		{"bad bucket name", map[string]string{"name": "Has_Upper"}, "", Spec{}, "name \"Has_Upper\" is not valid"},
		{"store contradicts URI", map[string]string{"source": "gs://abc", "store": "s3"}, "", Spec{}, "is a gcs URI"},
		{"local path", map[string]string{"source": "~/dataset"}, "", Spec{}, "bucket-csi storage upload"},
		{"both source and name", map[string]string{"source": "s3://abc", "name": "abc"}, "", Spec{}, "are both set"},
		{"nothing named", map[string]string{}, "", Spec{}, "neither"},
		{"source not persistent", map[string]string{"source": "s3://abc", "persistent": "false"}, "", Spec{}, "never deletes"},
		{"dotdot prefix", map[string]string{"source": "s3://abc/../etc"}, "", Spec{}, `".."`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.attrs, def, tt.derived)
			if tt.errHas != "" {
				if err == nil || !errors.Is(err, fault.Invalid) || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("Parse() error = %v, want fault.Invalid containing %q", err, tt.errHas)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse() error = %v", err)
			}
			if got != tt.want {
				t.Fatalf("Parse() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseConfiguredStores(t *testing.T) {
	_, err := Parse(map[string]string{"source": "gs://abc"}, Defaults{Kinds: kinds, Store: "s3", Stores: []string{"s3"}}, "")
	if !errors.Is(err, fault.Invalid) || !strings.Contains(err.Error(), "not configured") {
		t.Fatalf("got %v, want not configured", err)
	}
}

func TestParseSourceForms(t *testing.T) {
	tests := map[string]Location{
		"s3://b-1":                    {Store: "s3", Bucket: "b-1"},
		"gs://b_1.x/a/b":              {Store: "gcs", Bucket: "b_1.x", Prefix: "a/b"},
		"r2://bucket":                 {Store: "r2", Bucket: "bucket"},
		"cos://us-east/bucket/pre":    {Store: "ibm", Bucket: "bucket", Location: "us-east", Prefix: "pre"},
		"oci://Bucket_1@us-ashburn-1": {Store: "oci", Bucket: "Bucket_1", Location: "us-ashburn-1"},
		"oci://Bucket_1/p":            {Store: "oci", Bucket: "Bucket_1", Prefix: "p"},
	}
	for uri, want := range tests {
		got, err := ParseSource(kinds, uri)
		if err != nil || got != want {
			t.Errorf("ParseSource(%q) = %+v, %v; want %+v", uri, got, err, want)
		}
	}
	for _, uri := range []string{"s3://", "s3://ab", "s3://192.168.1.1", "s3://a..b", "ftp://x", "https://example.com/c", "cos://bucket", "r2://has.dot", "s3://abc/a//b", "s3://abc/a\\b"} {
		if _, err := ParseSource(kinds, uri); !errors.Is(err, fault.Invalid) {
			t.Errorf("ParseSource(%q) error = %v, want fault.Invalid", uri, err)
		}
	}
}

func TestDeriveBucketName(t *testing.T) {
	if got := DeriveBucketName("csi-", "pvc-0a1b"); got != "csi-pvc-0a1b" {
		t.Fatalf("plain name changed: %q", got)
	}
	a := DeriveBucketName("csi-", "Sanity_Vol")
	b := DeriveBucketName("csi-", "sanity-vol")
	if a == b {
		t.Fatalf("names that differ only after cleaning collide: %q", a)
	}
	long := DeriveBucketName("csi-", strings.Repeat("x", 100))
	if len(long) > 63 {
		t.Fatalf("too long: %d", len(long))
	}
	for _, n := range []string{a, b, long, DeriveBucketName("", "A"), DeriveBucketName("csi-", "--__--")} {
		if err := ValidateBucket(kinds, "s3", n); err != nil {
			t.Errorf("derived %q is not a valid S3 bucket: %v", n, err)
		}
		if err := ValidateBucket(kinds, "r2", n); err != nil {
			t.Errorf("derived %q is not a valid R2 bucket: %v", n, err)
		}
	}
}
