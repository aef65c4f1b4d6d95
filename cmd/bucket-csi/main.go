// Command bucket-csi is the bucket-csi CSI driver, its mounter host
// (`bucket-csi mounter-host`) and its storage CLI (`bucket-csi storage`);
// the FUSE servers are the separate binary bucket-csi-mounter. This is the
// only package that reads flags and the environment, and the only place
// that exits.
package main

import (
	"fmt"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
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
