package stores

import (
	"flag"
	"slices"
	"strings"
	"testing"

	"github.com/bucket-csi/bucket-csi/pkg/store"
)

// build parses args with the registry's flags and builds the registry with
// env as the environment.
func build(t *testing.T, env map[string]string, args ...string) (store.Registry, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	registry := Flags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return registry(func(k string) string { return env[k] })
}

// TestDefaultStores: by default every kind whose flags are complete is
// served; R2 joins once its account is set.
func TestDefaultStores(t *testing.T) {
	reg, err := build(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := reg.Kinds(), []string{"azure", "gcs", "ibm", "nebius", "oci", "s3"}; !slices.Equal(got, want) {
		t.Fatalf("default stores = %v, want %v", got, want)
	}
	reg, err = build(t, nil, "--r2-account-id", "abc")
	if err != nil {
		t.Fatal(err)
	}
	opts, err := reg["r2"].Rclone(nil, "")
	if err != nil || opts["endpoint"] != "https://abc.r2.cloudflarestorage.com" || opts["provider"] != "Cloudflare" {
		t.Fatalf("r2 rclone options = %v, %v", opts, err)
	}
	if b := reg["ibm"]; b.DefaultLocation != "us-east" {
		t.Fatalf("ibm default location = %q, want us-east", b.DefaultLocation)
	}
	// Whose bucket names live inside the account (bucket.Keeper.Ensure).
	keys := store.Secrets{"accessKeyID": "id", "secretAccessKey": "secret", "accountKey": "a2V5"}
	for kind, want := range map[string]bool{"s3": false, "ibm": false, "nebius": false, "r2": true, "azure": true} {
		st, err := reg[kind].Open(keys, "acct1")
		if err != nil {
			t.Fatalf("opening %s: %v", kind, err)
		}
		if got := store.IsAccountScoped(st); got != want {
			t.Errorf("%s: account-scoped %v, want %v", kind, got, want)
		}
		st.Close()
	}
}

// TestStoresFlag: --stores picks kinds, and refuses unknown ones and R2
// without its account, naming the fix.
func TestStoresFlag(t *testing.T) {
	reg, err := build(t, nil, "--stores", "s3, gcs")
	if err != nil || !slices.Equal(reg.Kinds(), []string{"gcs", "s3"}) {
		t.Fatalf("--stores s3,gcs = %v, %v", reg.Kinds(), err)
	}
	if _, err := build(t, nil, "--stores", "s3,r2"); err == nil || !strings.Contains(err.Error(), "--r2-account-id") {
		t.Fatalf("--stores r2 without an account = %v, want the flag named", err)
	}
	if _, err := build(t, nil, "--stores", "s4"); err == nil || !strings.Contains(err.Error(), "azure, gcs, ibm, nebius, oci, r2, s3") {
		t.Fatalf("--stores s4 = %v, want the kinds listed", err)
	}
}

// TestAmbientKeys: static keys in the environment serve every
// S3-compatible kind, and reach rclone only as options.
func TestAmbientKeys(t *testing.T) {
	reg, err := build(t, map[string]string{"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret"}, "--s3-endpoint", "http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"s3", "nebius", "ibm"} {
		opts, err := reg[kind].Rclone(nil, "us-south")
		if err != nil || opts["access_key_id"] != "id" || opts["secret_access_key"] != "secret" {
			t.Errorf("%s rclone options = %v, %v; want the ambient keys", kind, opts, err)
		}
	}
}

// TestCatalog: every kind has a URI form that parses back to it.
func TestCatalog(t *testing.T) {
	c := Catalog()
	for _, k := range All() {
		if len(k.Schemes) == 0 || !strings.HasPrefix(k.URIForm, k.Schemes[0]+"://") {
			t.Errorf("%s: URI form %q does not start with its scheme %v", k.Name, k.URIForm, k.Schemes)
		}
		if got, ok := c.ByScheme(k.Schemes[0]); !ok || got.Name != k.Name {
			t.Errorf("scheme %s is not %s's", k.Schemes[0], k.Name)
		}
	}
}
