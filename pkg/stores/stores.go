// Package stores is the registry of the store kinds this build knows: one
// line per store package. The driver's flags, the volume parser's catalog
// and the configured backends are all read from it, and importing it
// registers every kind's rclone backend with rclone.
//
// Adding a store: write its package under pkg/store (a store.Kind
// descriptor, a store.Store, its rclone options), add its line to All, and
// its row to the README's store table (docs/architecture.md).
package stores

import (
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/bucket-csi/bucket-csi/pkg/store"
	"github.com/bucket-csi/bucket-csi/pkg/store/azurestore"
	"github.com/bucket-csi/bucket-csi/pkg/store/gcsstore"
	"github.com/bucket-csi/bucket-csi/pkg/store/ocistore"
	"github.com/bucket-csi/bucket-csi/pkg/store/s3store"
)

// All returns the descriptor of every store kind, in the order the
// documentation lists them.
func All() []store.Kind {
	return []store.Kind{
		s3store.S3(),
		gcsstore.Kind(),
		azurestore.Kind(),
		s3store.R2(),
		s3store.IBM(),
		ocistore.Kind(),
		s3store.Nebius(),
	}
}

// Catalog returns every kind as the catalog the volume parser reads.
func Catalog() store.Catalog { return store.NewCatalog(All()...) }

// Flags registers --stores and every kind's flags on fs. The returned
// function, called once fs is parsed, builds the registry of the stores the
// driver serves: those --stores names, or by default every kind whose flags
// configure it (R2 needs its account).
func Flags(fs *flag.FlagSet) func(getenv func(string) string) (store.Registry, error) {
	kinds := All()
	list := fs.String("stores", "", "stores this driver serves, comma-separated (default: "+defaultList(kinds)+")")
	setups := make([]store.Setup, len(kinds))
	for i, k := range kinds {
		setups[i] = k.Flags(fs)
	}
	return func(getenv func(string) string) (store.Registry, error) {
		all, unset := store.Registry{}, map[string]error{}
		for i, k := range kinds {
			b, err := setups[i](getenv)
			switch {
			case errors.Is(err, store.ErrNotConfigured):
				unset[k.Name] = err
			case err != nil:
				return nil, fmt.Errorf("store %s: %w", k.Name, err)
			default:
				all[k.Name] = b
			}
		}
		if *list == "" {
			return all, nil
		}
		out := store.Registry{}
		for _, name := range strings.Split(*list, ",") {
			name = strings.TrimSpace(name)
			if err, ok := unset[name]; ok {
				return nil, fmt.Errorf("--stores includes %s: %v", name, err)
			}
			b, ok := all[name]
			if !ok {
				return nil, fmt.Errorf("--stores: %q is not one of %s", name, strings.Join(Catalog().Names(), ", "))
			}
			out[name] = b
		}
		return out, nil
	}
}

// defaultList names the kinds served by default, for --help.
func defaultList(kinds []store.Kind) string {
	var names []string
	for _, k := range kinds {
		names = append(names, k.Name)
	}
	return "every store whose flags are complete: " + strings.Join(names, ", ")
}
