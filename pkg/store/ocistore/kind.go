package ocistore

import (
	"flag"
	"fmt"
	"regexp"
	"strings"

	// The rclone backend of this kind: mounts, COPY and `storage upload`.
	_ "github.com/rclone/rclone/backend/oracleobjectstorage"

	"github.com/bucket-csi/bucket-csi/pkg/store"
)

// Kind is the descriptor of OCI Object Storage
// (oci://<bucket>[@<region>][/prefix]): the region is the volume's location.
func Kind() store.Kind {
	return store.Kind{
		Name: "oci", Schemes: []string{"oci"}, URIForm: "oci://<bucket>[@<region>][/prefix]",
		SplitURI: func(rest string) (string, string, string, error) {
			bucket, prefix, _ := strings.Cut(rest, "/")
			b, region, ok := strings.Cut(bucket, "@")
			if !ok {
				return bucket, "", prefix, nil
			}
			if !store.IsRegion(region) {
				return "", "", "", fmt.Errorf("region %q after @ is not a region name", region)
			}
			return b, region, prefix, nil
		},
		ValidateBucket: ValidateBucket,
		Flags: func(fs *flag.FlagSet) store.Setup {
			var c Config
			fs.StringVar(&c.Region, "oci-region", "", "OCI region for buckets the driver creates (oci:// URIs may name another)")
			fs.StringVar(&c.Compartment, "oci-compartment", "", "OCI compartment OCID for buckets the driver creates and lists")
			fs.StringVar(&c.Namespace, "oci-namespace", "", "OCI Object Storage namespace (default: looked up)")
			fs.StringVar(&c.Endpoint, "oci-endpoint", "", "OCI Object Storage endpoint override ({region} is replaced)")
			return func(func(string) string) (store.Backend, error) { return Backend(c), nil }
		},
	}
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,256}$`)

// ValidateBucket checks OCI's bucket naming rules.
func ValidateBucket(b string) error {
	if !nameRE.MatchString(b) {
		return fmt.Errorf("bucket %q must be 1-256 characters of letters, digits, dots, hyphens and underscores", b)
	}
	return nil
}
