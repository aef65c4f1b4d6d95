package gcsstore

import (
	"flag"
	"fmt"
	"net"
	"regexp"
	"strings"

	// The rclone backend of this kind: mounts, COPY and `storage upload`.
	_ "github.com/rclone/rclone/backend/googlecloudstorage"

	"github.com/bucket-csi/bucket-csi/pkg/store"
)

// Kind is the descriptor of Google Cloud Storage (gs://bucket[/prefix]).
func Kind() store.Kind {
	return store.Kind{
		Name: "gcs", Schemes: []string{"gs"}, URIForm: "gs://bucket[/prefix]",
		ValidateBucket: ValidateBucket,
		Flags: func(fs *flag.FlagSet) store.Setup {
			var c Config
			fs.StringVar(&c.ProjectID, "gcs-project", "", "GCS project that owns buckets the driver creates")
			fs.StringVar(&c.Endpoint, "gcs-endpoint", "", "GCS JSON API endpoint (an emulator: http://host:port/storage/v1/)")
			return func(func(string) string) (store.Backend, error) { return Backend(c), nil }
		},
	}
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$`)

// ValidateBucket checks GCS's bucket naming rules.
func ValidateBucket(b string) error {
	if !nameRE.MatchString(b) {
		return fmt.Errorf("bucket %q must be 3-222 characters of lowercase letters, digits, dots, hyphens and underscores, starting and ending with a letter or digit", b)
	}
	for _, part := range strings.Split(b, ".") {
		if len(part) == 0 || len(part) > 63 {
			return fmt.Errorf("bucket %q: each dot-separated part must be 1-63 characters", b)
		}
	}
	if len(b) > 63 && !strings.Contains(b, ".") {
		return fmt.Errorf("bucket %q: names over 63 characters must contain dots", b)
	}
	if net.ParseIP(b) != nil || strings.HasPrefix(b, "goog") || strings.Contains(b, "google") {
		return fmt.Errorf("bucket %q must not be an IP address, start with goog or contain google", b)
	}
	return nil
}
