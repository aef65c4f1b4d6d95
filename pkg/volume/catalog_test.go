package volume

import "github.com/bucket-csi/bucket-csi/pkg/stores"

// kinds is the catalog of every store kind of this build, as the driver
// passes it.
var kinds = stores.Catalog()
