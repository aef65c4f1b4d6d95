package bench

import (
	"fmt"
	"os"

	"github.com/bucket-csi/bucket-csi/pkg/diskimage"
)

// diskSize is the bench's disk: room for the data sets at scale 1 (the
// S3 server's objects, the local copy of the large object, COPY's and
// rclone copy's copies) beside a few MOUNT_CACHED cache images, which
// each take a quarter of a driver's disk budget (0.8 of the free space).
const diskSize = 32 << 30

// benchDisk is the filesystem every file of the run goes to outside the
// volumes' own images: the S3 server's objects, the drivers' state
// directories (COPY's downloads, MOUNT_CACHED's cache images), rclone
// copy's destination, the caches of rclone with SkyPilot's flags and the
// local-disk loops. It is a fresh ext4 image with a journal, as a node's
// disk is (diskimage: 4 KiB blocks, a direct-I/O loop device), mounted
// for the run and named by TMPDIR for the bench and every process it
// starts. The machine's own /tmp was ext4 without a journal, where each
// new file walks past every inode freed in the last minute: COPY's
// files/s swung twofold with how many files the runs before it had
// deleted (docs/benchmarks.md, "The bench's disk has no journal").
type benchDisk struct {
	img, dir string
}

// attachDisk makes and mounts the run's disk and points TMPDIR at it.
func attachDisk() (*benchDisk, error) {
	dir, err := os.MkdirTemp("", "bucket-csi-bench-disk-")
	if err != nil {
		return nil, err
	}
	d := &benchDisk{img: dir + ".img", dir: dir}
	if err := diskimage.Attach(d.img, d.dir, diskSize); err != nil {
		_ = os.Remove(dir)
		_ = os.Remove(d.img)
		return nil, fmt.Errorf("the bench's disk (an ext4 image with a journal, needs root and mkfs.ext4): %w", err)
	}
	if err := os.Setenv("TMPDIR", d.dir); err != nil {
		_ = d.remove()
		return nil, err
	}
	return d, nil
}

// remove unmounts the disk and deletes its image.
func (d *benchDisk) remove() error {
	return diskimage.Remove(d.img, d.dir)
}
