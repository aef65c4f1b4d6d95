package s3store

import (
	"flag"
	"fmt"
	"net"
	"regexp"
	"strings"

	// The rclone backend for every S3-compatible kind: mounts, COPY and
	// `storage upload` reach these stores through it.
	_ "github.com/rclone/rclone/backend/s3"

	"github.com/bucket-csi/bucket-csi/pkg/store"
)

// S3 is the descriptor of Amazon S3 and any S3-compatible server.
func S3() store.Kind {
	return store.Kind{
		Name: "s3", Schemes: []string{"s3"}, URIForm: "s3://bucket[/prefix]",
		ValidateBucket: ValidateBucket,
		Flags: func(fs *flag.FlagSet) store.Setup {
			var c Config
			fs.StringVar(&c.Endpoint, "s3-endpoint", "", "S3 endpoint URL (empty: AWS)")
			fs.StringVar(&c.Region, "s3-region", "", "S3 region (default us-east-1)")
			fs.BoolVar(&c.PathStyle, "s3-path-style", false, "use path-style S3 addressing")
			fs.StringVar(&c.RcloneProvider, "s3-provider", "", "rclone s3 provider name (default AWS, or Other with an endpoint)")
			return func(getenv func(string) string) (store.Backend, error) {
				c.Ambient = ambientKeys(getenv)
				return Backend(c), nil
			}
		},
	}
}

// ambientKeys are the static keys in the driver's environment. They are
// S3-style and serve every S3-compatible kind.
func ambientKeys(getenv func(string) string) Keys {
	return Keys{AccessKeyID: getenv("AWS_ACCESS_KEY_ID"), SecretAccessKey: getenv("AWS_SECRET_ACCESS_KEY"), SessionToken: getenv("AWS_SESSION_TOKEN")}
}

var (
	s3NameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
	r2NameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$`)
)

// ValidateBucket checks S3's bucket naming rules (shared by IBM COS and
// Nebius).
func ValidateBucket(b string) error {
	switch {
	case !s3NameRE.MatchString(b):
		return fmt.Errorf("bucket %q must be 3-63 characters of lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit", b)
	case strings.Contains(b, ".."):
		return fmt.Errorf("bucket %q must not contain two dots in a row", b)
	case net.ParseIP(b) != nil:
		return fmt.Errorf("bucket %q must not be formatted as an IP address", b)
	case strings.HasPrefix(b, "xn--") || strings.HasPrefix(b, "sthree-"):
		return fmt.Errorf("bucket %q must not start with xn-- or sthree-", b)
	case strings.HasSuffix(b, "-s3alias") || strings.HasSuffix(b, "--ol-s3"):
		return fmt.Errorf("bucket %q must not end with -s3alias or --ol-s3", b)
	}
	return nil
}
