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

// benchDisk is the filesystem the run's files go to outside the volumes'
// own images: a fresh ext4 image with a journal, as a node's disk is
// (diskimage: 4 KiB blocks, a direct-I/O loop device). TMPDIR names it,
// so the bench's temporary directories are made there, and with them
// every directory the bench hands the processes it starts: the S3
// server's objects, the drivers' state directories (COPY's downloads,
// MOUNT_CACHED's cache images), rclone copy's destination, the caches of
// rclone with SkyPilot's flags, the baselines' HOMEs and the local-disk
// loops (s3fs keeps its temporary files in its own default, /tmp). The
// machine's own /tmp was ext4 without a journal, where each new file
// walks past every inode freed in the last minute: COPY's files/s swung
// twofold with how many files the runs before it had deleted
// (docs/benchmarks.md, "The bench's disk has no journal").
type benchDisk struct {
	img, dir string
}

// attachDisk makes the run's disk in the TMPDIR the process started
// with (bucket-csi-bench-disk-*.img, preallocated, and the directory of
// the same name it is mounted on) and points TMPDIR at it. The caller
// removes it (remove) once nothing runs on it; a process killed before
// that leaves both behind.
func attachDisk() (*benchDisk, error) {
	dir, err := os.MkdirTemp("", "bucket-csi-bench-disk-")
	if err != nil {
		return nil, err
	}
	d := &benchDisk{img: dir + ".img", dir: dir}
	if err := diskimage.Attach(d.img, d.dir, diskSize); err != nil {
		_ = os.Remove(dir)
		_ = os.Remove(d.img)
		return nil, fmt.Errorf("the bench's disk, a %d GiB ext4 image with a journal at %s (needs root, mkfs.ext4 and the room on a filesystem that can preallocate): %w", diskSize>>30, d.img, err)
	}
	if err := os.Setenv("TMPDIR", d.dir); err != nil {
		_ = d.remove()
		return nil, err
	}
	return d, nil
}

// remove unmounts the disk and deletes its image; an error names both.
func (d *benchDisk) remove() error {
	if err := diskimage.Remove(d.img, d.dir); err != nil {
		return fmt.Errorf("%s (mounted on %s): %w", d.img, d.dir, err)
	}
	return nil
}
