package s3store

import (
	"flag"
	"fmt"
	"strings"

	"github.com/bucket-csi/bucket-csi/pkg/store"
)

// The S3-compatible services with a kind of their own: each is an S3
// Config with its own endpoint rule, rclone provider, URI scheme and flags
// over the one S3 client. Adding such a service is one function here plus
// its line in pkg/stores.

// R2 is the descriptor of Cloudflare R2 (r2://bucket[/prefix]). It is
// served only once --r2-account-id or --r2-endpoint names the account.
func R2() store.Kind {
	return store.Kind{
		Name: "r2", Schemes: []string{"r2"}, URIForm: "r2://bucket[/prefix]",
		ValidateBucket: func(b string) error {
			if !r2NameRE.MatchString(b) {
				return fmt.Errorf("bucket %q must be 3-63 characters of lowercase letters, digits and hyphens, starting and ending with a letter or digit", b)
			}
			return nil
		},
		Flags: func(fs *flag.FlagSet) store.Setup {
			var c Config
			var account string
			fs.StringVar(&account, "r2-account-id", "", "Cloudflare account ID (R2 endpoint https://<id>.r2.cloudflarestorage.com)")
			fs.StringVar(&c.Endpoint, "r2-endpoint", "", "R2 endpoint override")
			return func(getenv func(string) string) (store.Backend, error) {
				if c.Endpoint == "" && account != "" {
					c.Endpoint = "https://" + account + ".r2.cloudflarestorage.com"
				}
				if c.Endpoint == "" {
					return store.Backend{}, fmt.Errorf("%w: set --r2-account-id (or --r2-endpoint)", store.ErrNotConfigured)
				}
				c.Region, c.RcloneProvider, c.PathStyle, c.Ambient = "auto", "Cloudflare", true, ambientKeys(getenv)
				// R2's bucket names are the account's own (its endpoint
				// names the account).
				c.AccountScoped = true
				return Backend(c), nil
			}
		},
	}
}

// IBM is the descriptor of IBM Cloud Object Storage
// (cos://<region>/<bucket>[/prefix]): the region is the volume's location.
func IBM() store.Kind {
	return store.Kind{
		Name: "ibm", Schemes: []string{"cos"}, URIForm: "cos://<region>/<bucket>[/prefix]",
		SplitURI: func(rest string) (string, string, string, error) {
			region, after, _ := strings.Cut(rest, "/")
			if !store.IsRegion(region) {
				return "", "", "", fmt.Errorf("cos:// URIs are cos://<region>/<bucket>[/prefix]; region %q is not a region name", region)
			}
			bucket, prefix, _ := strings.Cut(after, "/")
			return bucket, region, prefix, nil
		},
		ValidateBucket: ValidateBucket,
		Flags: func(fs *flag.FlagSet) store.Setup {
			var c Config
			var region string
			fs.StringVar(&region, "ibm-region", "us-east", "IBM COS region for buckets the driver creates")
			fs.StringVar(&c.Endpoint, "ibm-endpoint", "https://s3.{location}.cloud-object-storage.appdomain.cloud", "IBM COS endpoint template ({location} is the region)")
			return func(getenv func(string) string) (store.Backend, error) {
				c.RcloneProvider, c.PathStyle, c.Ambient = "IBMCOS", true, ambientKeys(getenv)
				b := Backend(c)
				b.DefaultLocation = region
				return b, nil
			}
		},
	}
}

// Nebius is the descriptor of Nebius Object Storage (nebius://bucket[/prefix]).
func Nebius() store.Kind {
	return store.Kind{
		Name: "nebius", Schemes: []string{"nebius"}, URIForm: "nebius://bucket[/prefix]",
		ValidateBucket: ValidateBucket,
		Flags: func(fs *flag.FlagSet) store.Setup {
			var c Config
			fs.StringVar(&c.Region, "nebius-region", "eu-north1", "Nebius region")
			fs.StringVar(&c.Endpoint, "nebius-endpoint", "", "Nebius endpoint override (default https://storage.<region>.nebius.cloud)")
			return func(getenv func(string) string) (store.Backend, error) {
				if c.Endpoint == "" {
					c.Endpoint = "https://storage." + c.Region + ".nebius.cloud"
				}
				c.RcloneProvider, c.PathStyle, c.Ambient = "Other", true, ambientKeys(getenv)
				return Backend(c), nil
			}
		},
	}
}
