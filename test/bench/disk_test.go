package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bucket-csi/bucket-csi/pkg/diskimage"
	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/mountpoint"
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

// removeWait is how long remove retries a disk still busy. Short runs
// of a MOUNT_CACHED figure left the disk busy at their end about one time
// in four (December 2026), and a few seconds later it came off: what the
// run started (FUSE servers, their cache images, loop-mounted files on
// this disk) lets go of it after it has stopped. A disk left behind holds
// its 32 GiB, and the next run (make bench runs once per round-trip time)
// found no room for its own.
const removeWait = 30 * time.Second

// remove unmounts the disk and deletes its image; an error names both,
// and the processes that still hold files on it.
func (d *benchDisk) remove() error {
	deadline := time.Now().Add(removeWait)
	for {
		err := diskimage.Remove(d.img, d.dir)
		if err == nil {
			return nil
		}
		if !errors.Is(err, fault.Pending) || time.Now().After(deadline) {
			return fmt.Errorf("%s (mounted on %s): %w (held by: %s)", d.img, d.dir, err, holders(d.dir))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// holders names the processes with a file open, their working directory
// or their root at or below dir, the loop devices whose backing file is
// there, and the mounts below it.
func holders(dir string) string {
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	at := func(p string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		links, _ := filepath.Glob(p + "/fd/*")
		links = append(links, p+"/cwd", p+"/root")
		for _, l := range links {
			if t, err := os.Readlink(l); err == nil && at(t) {
				cmd, _ := os.ReadFile(p + "/comm")
				out = append(out, fmt.Sprintf("pid %s (%s) %s", filepath.Base(p), strings.TrimSpace(string(cmd)), t))
				break
			}
		}
	}
	loops, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, l := range loops {
		if t, err := os.ReadFile(l); err == nil && at(strings.TrimSpace(string(t))) {
			out = append(out, fmt.Sprintf("%s backs %s", strings.TrimSpace(string(t)), strings.Split(l, "/")[3]))
		}
	}
	mounts, _ := mountpoint.Below(dir)
	for _, m := range mounts {
		out = append(out, "mounted below: "+m)
	}
	if len(out) == 0 {
		return "none found"
	}
	return strings.Join(out, "; ")
}
