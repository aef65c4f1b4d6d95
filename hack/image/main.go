// Command image builds the bucket-csi image without Docker: the final stage
// of the repository's Dockerfile (read by ParseDockerfile) filled from this
// Debian host's installed packages and the binaries in -bin, written as a
// docker-archive tarball for `ctr -n k8s.io images import` or `docker load`.
// The host must run the Debian release the Dockerfile's base image names.
//
//	go run ./hack/image -bin bin/image -tag ghcr.io/bucket-csi/bucket-csi:dev -o bin/bucket-csi-image.tar
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/bucket-csi/bucket-csi/internal/ocimage"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	dockerfile := fs.String("dockerfile", "Dockerfile", "the Dockerfile whose final stage is built")
	bin := fs.String("bin", "bin/image", "directory of the binaries the build stage makes (static, CGO_ENABLED=0)")
	tag := fs.String("tag", "ghcr.io/bucket-csi/bucket-csi:dev", "image reference")
	out := fs.String("o", "bin/bucket-csi-image.tar", "output tarball")
	if err := fs.Parse(args); err != nil {
		return err
	}
	data, err := os.ReadFile(*dockerfile)
	if err != nil {
		return err
	}
	spec, err := ParseDockerfile(string(data))
	if err != nil {
		return fmt.Errorf("%s: %w", *dockerfile, err)
	}
	codename, err := ocimage.HostCodename()
	if err != nil {
		return err
	}
	if !strings.Contains(spec.Base, codename) {
		return fmt.Errorf("the Dockerfile's base is %s but this host runs Debian %s: the packages would differ", spec.Base, codename)
	}
	tree := ocimage.Tree{}
	tree.Add(ocimage.Entry{Path: "/tmp", Dir: true, Mode: 0o777 | os.ModeSticky})
	tree.Add(ocimage.Entry{Path: "/etc/passwd", Data: []byte("root:x:0:0:root:/root:/usr/sbin/nologin\n")})
	tree.Add(ocimage.Entry{Path: "/etc/group", Data: []byte("root:x:0:\n")})
	if err := tree.AddDebianPackages(spec.Packages...); err != nil {
		return err
	}
	var bins []string
	for _, b := range spec.Binaries {
		bins = append(bins, filepath.Join(*bin, b))
	}
	tree.AddBinaries(spec.BinDir, bins...)
	img, err := tree.Image(ocimage.Config{Entrypoint: spec.Entrypoint})
	if err != nil {
		return err
	}
	if err := ocimage.Write(*out, *tag, img); err != nil {
		return err
	}
	fmt.Printf("%s: %s (%d paths)\n", *out, *tag, len(tree))
	return nil
}
