package test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bucket-csi/bucket-csi/internal/localenv"
	"github.com/bucket-csi/bucket-csi/internal/netdelay"
	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/remotefs"
	"github.com/bucket-csi/bucket-csi/pkg/store/azurestore"
	"github.com/bucket-csi/bucket-csi/pkg/store/gcsstore"
	"github.com/bucket-csi/bucket-csi/pkg/store/ocistore"

	"github.com/bucket-csi/bucket-csi/pkg/store"
	"github.com/bucket-csi/bucket-csi/pkg/store/s3store"
	"github.com/bucket-csi/bucket-csi/pkg/store/storetest"
	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// TestStoreConformance runs the shared store suite against a real server or
// emulator of every store.
func TestStoreConformance(t *testing.T) {
	t.Run("s3", func(t *testing.T) {
		s3 := testenv.StartS3(t)
		cfg := s3store.Config{Endpoint: s3.Endpoint, PathStyle: true}
		storetest.Run(t, storetest.Target{
			Open: func(t *testing.T) store.Store { return mustOpen(t, s3store.Backend(cfg), s3.Secrets()) },
			OpenWrong: func(t *testing.T) store.Store {
				return mustOpen(t, s3store.Backend(cfg), map[string]string{"accessKeyID": s3.AccessKey, "secretAccessKey": "wrong-secret"})
			},
			Objects: 1100,
		})
		checkPrefixBesideObject(t, s3store.Backend(cfg), s3.Secrets(), "", false)
	})
	// The S3-compatible profiles, each against versitygw through an endpoint
	// override, with the profile's own provider settings.
	for _, profile := range []struct {
		name, region string
		cfg          func(endpoint string) s3store.Config
	}{
		{"r2", "auto", func(e string) s3store.Config { return s3store.Config{Endpoint: e, Region: "auto", PathStyle: true} }},
		// IBM: the signing region comes from the volume's location
		// (cos://<region>/<bucket>), here "us-south".
		{"ibm", "us-south", func(e string) s3store.Config { return s3store.Config{Endpoint: e, PathStyle: true} }},
		{"nebius", "eu-north1", func(e string) s3store.Config {
			return s3store.Config{Endpoint: e, Region: "eu-north1", PathStyle: true}
		}},
	} {
		t.Run(profile.name, func(t *testing.T) {
			s3 := testenv.StartS3Region(t, profile.region)
			b := s3store.Backend(profile.cfg(s3.Endpoint))
			storetest.Run(t, storetest.Target{
				Open: func(t *testing.T) store.Store { return mustOpenAt(t, b, s3.Secrets(), "us-south") },
				OpenWrong: func(t *testing.T) store.Store {
					return mustOpenAt(t, b, map[string]string{"accessKeyID": s3.AccessKey, "secretAccessKey": "wrong"}, "us-south")
				},
				Objects: 50,
			})
			checkPrefixBesideObject(t, b, s3.Secrets(), "us-south", false)
		})
	}
	t.Run("gcs", func(t *testing.T) {
		srv := testenv.StartGCS(t)
		cfg := gcsstore.Config{Endpoint: srv.Endpoint, ProjectID: localenv.GCSProject}
		storetest.Run(t, storetest.Target{
			Open: func(t *testing.T) store.Store { return mustOpen(t, gcsstore.Backend(cfg), nil) },
			// fake-gcs-server accepts any token; the refusal comes from
			// the key's token endpoint, as with a revoked key on Google.
			OpenWrong: func(t *testing.T) store.Store {
				return mustOpen(t, gcsstore.Backend(cfg), map[string]string{"serviceAccountJSON": testenv.RefusedServiceAccount(t)})
			},
			Objects: 120,
		})
		checkPrefixBesideObject(t, gcsstore.Backend(cfg), nil, "", true)
	})
	// OCI has no emulator: a local stand-in speaking the API subset the
	// store and rclone use (internal/ocistandin; not a real OCI endpoint).
	t.Run("oci", func(t *testing.T) {
		oci := testenv.StartOCI(t)
		b := ocistore.Backend(oci.Config)
		storetest.Run(t, storetest.Target{
			Open:      func(t *testing.T) store.Store { return mustOpen(t, b, oci.Secrets()) },
			OpenWrong: func(t *testing.T) store.Store { return mustOpen(t, b, oci.WrongSecrets()) },
			Objects:   1100,
		})
		checkPrefixBesideObject(t, b, oci.Secrets(), "", false)
	})
	t.Run("azure", func(t *testing.T) {
		srv := testenv.StartAzurite(t)
		cfg := azurestore.Config{Account: localenv.AzuriteAccount, Endpoint: testenv.Emulators{Azure: srv}.AzureEndpoint()}
		storetest.Run(t, storetest.Target{
			Open: func(t *testing.T) store.Store {
				return mustOpen(t, azurestore.Backend(cfg), map[string]string{"accountKey": localenv.AzuriteKey})
			},
			OpenWrong: func(t *testing.T) store.Store {
				return mustOpen(t, azurestore.Backend(cfg), map[string]string{"accountKey": "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk="})
			},
			Objects: 120,
		})
		checkPrefixBesideObject(t, azurestore.Backend(cfg), map[string]string{"accountKey": localenv.AzuriteKey}, "", true)
	})
}

func mustOpen(t *testing.T, b store.Backend, secrets map[string]string) store.Store {
	t.Helper()
	return mustOpenAt(t, b, secrets, "")
}

func mustOpenAt(t *testing.T, b store.Backend, secrets map[string]string, location string) store.Store {
	t.Helper()
	s, err := b.Open(secrets, location)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestS3StoreReusesItsConnection: a Store's requests share one connection
// (a store 10 ms away costs a round trip per new connection, more with
// TLS), and Close leaves none open.
func TestS3StoreReusesItsConnection(t *testing.T) {
	s3 := testenv.StartS3(t)
	p := &netdelay.Proxy{Target: strings.TrimPrefix(s3.Endpoint, "http://"), RTT: 10 * time.Millisecond}
	if err := p.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	s, err := s3store.Backend(s3store.Config{Endpoint: "http://" + p.Addr(), PathStyle: true}).Open(s3.Secrets(), "")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const b = "reuse"
	start := time.Now()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.CreateBucket(ctx, b))
	for i := range 8 {
		must(s.PutObject(ctx, b, fmt.Sprint("k", i), []byte("v")))
		must(s.HeadBucket(ctx, b))
	}
	if _, err := s.GetObject(ctx, b, "k0"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetObject(ctx, b, "missing"); !errors.Is(err, fault.NotFound) {
		t.Fatalf("GetObject of a missing key = %v, want fault.NotFound", err)
	}
	must(s.List(ctx, b, "", 0, func(store.Object) error { return nil }))
	must(s.DeleteObjects(ctx, b, []string{"k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"}))
	must(s.DeleteBucket(ctx, b))
	t.Logf("22 requests in %v over %d connection(s)", time.Since(start).Round(time.Millisecond), p.Accepted())
	if n := p.Accepted(); n != 1 {
		t.Errorf("22 requests of one Store opened %d connections, want 1", n)
	}
	must(s.Close())
	deadline := time.Now().Add(5 * time.Second)
	for p.Live() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := p.Live(); n != 0 {
		t.Errorf("%d connection(s) still open after Close", n)
	}
}

// checkPrefixBesideObject: a volume's prefix that is also an object's
// key ("p" beside "p/inside") opens as the prefix, the way every mode and
// `storage upload` open it (remotefs.Open): it shows the keys below p/
// only, or, where rclone's backend looks the prefix up as an object
// whatever the path (refused: GCS, Azure), it is refused with
// fault.Precondition. Never the directory above the prefix, which holds
// the other prefixes' keys (rclone's fs.ErrorIsFile filesystem, which the
// FUSE server used to serve).
func checkPrefixBesideObject(t *testing.T, b store.Backend, secrets map[string]string, location string, refused bool) {
	t.Run("a prefix that is also an object's name", func(t *testing.T) {
		ctx := context.Background()
		s := mustOpenAt(t, b, secrets, location)
		bucket := fmt.Sprintf("conf-prefix-%d", time.Now().UnixNano()%1e9)
		if err := s.CreateBucket(ctx, bucket); err != nil {
			t.Fatal(err)
		}
		keys := []string{"p", "q/secret", "p/inside"}
		t.Cleanup(func() {
			_ = s.DeleteObjects(ctx, bucket, keys)
			_ = s.DeleteBucket(ctx, bucket)
		})
		for _, k := range keys[:2] {
			if err := s.PutObject(ctx, bucket, k, []byte(k)); err != nil {
				t.Fatal(err)
			}
		}
		// A server keeping objects as files (versitygw here) cannot hold
		// p/inside beside the object p; real S3 can.
		var want []string
		if err := s.PutObject(ctx, bucket, "p/inside", []byte("inside")); err == nil {
			want = []string{"inside"}
		} else if !errors.Is(err, fault.Conflict) {
			t.Fatal(err)
		}
		opts, err := b.Rclone(secrets, location)
		if err != nil {
			t.Fatal(err)
		}
		f, err := remotefs.Open(ctx, opts, "prefixcheck", filepath.Join(t.TempDir(), "private"), bucket+"/p")
		if refused {
			if !errors.Is(err, fault.Precondition) || f != nil || !strings.Contains(err.Error(), `"p"`) {
				t.Fatalf("Open of a prefix named like an object = %v, %v; want fault.Precondition naming the prefix", f, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Open of a prefix named like an object: %v", err)
		}
		entries, err := f.List(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Remote())
		}
		if !slices.Equal(names, want) {
			t.Fatalf("the prefix p shows %q, want %q", names, want)
		}
	})
}
