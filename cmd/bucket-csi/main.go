// Command bucket-csi is the bucket-csi CSI driver, its FUSE server
// (`bucket-csi mounter`, started by the driver itself) and its storage
// CLI (`bucket-csi storage`). This is the only package that reads flags and the
// environment, and the only place that exits.
package main

import (
	"fmt"
	"os"

	"github.com/bucket-csi/bucket-csi/pkg/mounter"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "mounter":
			os.Exit(mounter.ServeMain())
		case "mounter-host":
			if err := mounterHost(os.Args[2:]); err != nil {
				fmt.Fprintln(os.Stderr, "bucket-csi mounter-host:", err)
				os.Exit(1)
			}
			return
		case "version", "--version":
			fmt.Println(version)
			return
		case "storage":
			if err := storageMain(os.Args[2:]); err != nil {
				fmt.Fprintln(os.Stderr, "bucket-csi storage:", err)
				os.Exit(1)
			}
			return
		}
	}
	if err := serve(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bucket-csi:", err)
		os.Exit(1)
	}
}
