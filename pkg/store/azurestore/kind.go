package azurestore

import (
	"flag"
	"fmt"
	"regexp"
	"strings"

	// The rclone backend of this kind: mounts, COPY and `storage upload`.
	_ "github.com/rclone/rclone/backend/azureblob"

	"github.com/bucket-csi/bucket-csi/pkg/store"
)

const hostSuffix = ".blob.core.windows.net"

// Kind is the descriptor of Azure Blob Storage
// (https://<account>.blob.core.windows.net/<container>[/prefix]): the
// account is the volume's location.
func Kind() store.Kind {
	return store.Kind{
		Name: "azure", Schemes: []string{"https"}, URIForm: "https://<account>.blob.core.windows.net/<container>[/prefix]",
		SplitURI: func(rest string) (string, string, string, error) {
			host, after, _ := strings.Cut(rest, "/")
			account, isAzure := strings.CutSuffix(strings.ToLower(host), hostSuffix)
			if !isAzure {
				return "", "", "", fmt.Errorf("the only https:// form accepted is https://<account>.blob.core.windows.net/<container>[/prefix]")
			}
			if !store.IsAccountName(account) {
				return "", "", "", fmt.Errorf("Azure storage account %q must be 3-24 lowercase letters and digits", account)
			}
			container, prefix, _ := strings.Cut(after, "/")
			return container, account, prefix, nil
		},
		ValidateBucket: ValidateContainer,
		Flags: func(fs *flag.FlagSet) store.Setup {
			var c Config
			fs.StringVar(&c.Account, "azure-account", "", "Azure storage account for containers the driver creates")
			fs.StringVar(&c.Endpoint, "azure-endpoint", "", "Azure account URL template with {account} (default https://{account}.blob.core.windows.net/)")
			return func(func(string) string) (store.Backend, error) { return Backend(c), nil }
		},
	}
}

var containerRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$`)

// ValidateContainer checks Azure's container naming rules.
func ValidateContainer(b string) error {
	if !containerRE.MatchString(b) || strings.Contains(b, "--") {
		return fmt.Errorf("container %q must be 3-63 characters of lowercase letters, digits and single hyphens, starting and ending with a letter or digit", b)
	}
	return nil
}
