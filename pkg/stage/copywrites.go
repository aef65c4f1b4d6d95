package stage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/bucket-csi/bucket-csi/pkg/diskimage"
	"github.com/bucket-csi/bucket-csi/pkg/fault"
)

// What a pod writes into a COPY volume goes to the volume's write space:
// a filesystem of its own of WriteSpace bytes (diskimage), reserved from
// the node disk budget with the copy. The staging path is an overlay of
// that space over the copy, so a pod that writes past it gets ENOSPC and
// the node's disk is never filled; the copy itself is never changed by a
// pod (a file changed, in content or metadata, is first copied into the
// write space whole), so a kept copy holds the bucket's files only. The
// write space is made while the copy downloads, once the copy's
// reservation holds it (a copy that then fails takes away one it made;
// Stage makes one it does not find), lives while the volume is staged (a
// Release keeps it for the next Stage) and is dropped at unstage: COPY
// writes never reach the bucket, and now never outlive the volume either.
// Read-only volumes have no write space: the copy is bind-mounted
// read-only as before.

// DefaultWriteSpace is the write space of a writable COPY volume when
// WriteSpace is 0; writeSpace also caps it at a sixteenth of the budget.
const DefaultWriteSpace = 1 << 30

// writeSpace is the size of a writable volume's write space: WriteSpace,
// or else min(1 GiB, budget/16); never below diskimage.MinSize.
func (c *Copy) writeSpace() int64 {
	n := c.WriteSpace
	if n <= 0 {
		n = DefaultWriteSpace
		if c.Disk != nil {
			n = min(n, c.Disk.Budget()/16)
		}
	}
	return max(n, diskimage.MinSize)
}

// writesDir is where a volume's write space is mounted, and writesImage
// the file that holds it.
func (c *Copy) writesDir(volumeID string) string {
	return filepath.Join(c.dir(volumeID), "writes")
}

func (c *Copy) writesImage(volumeID string) string {
	return c.writesDir(volumeID) + ".img"
}

// attachWrites mounts the volume's write space on writesDir, making its
// image first if there is none (diskimage.Attach: idempotent, a mounted
// write space is left as it is).
func (c *Copy) attachWrites(volumeID string) error {
	err := diskimage.Attach(c.writesImage(volumeID), c.writesDir(volumeID), c.writeSpace())
	if errors.Is(err, diskimage.ErrOutsideImage) {
		err = fmt.Errorf("%w: %v", fault.Unavailable, err)
	}
	if err != nil {
		return fmt.Errorf("the volume's write space: %w", err)
	}
	return nil
}

// writesAttached is the answer of attachWritesAsync: made is set when no
// image was there before, so this attach made it (even if it then
// failed).
type writesAttached struct {
	made bool
	err  error
}

// attachWritesAsync runs attachWrites in the background and returns where
// its answer arrives. A copy starts it once its reservation, which holds
// the write space, is made: the image's making (mkfs.ext4, a loop device,
// a mount: 20-35 ms here) then overlaps the downloads instead of
// following them. Only one runs for a volume at a time: its copy job's.
func (c *Copy) attachWritesAsync(volumeID string) <-chan writesAttached {
	done := make(chan writesAttached, 1)
	go func() {
		made := diskimage.Size(c.writesImage(volumeID)) == 0
		done <- writesAttached{made: made, err: c.attachWrites(volumeID)}
	}()
	return done
}

// settleWrites waits for the copy's attach of the write space (a, nil if
// none ran) and returns the copy's outcome: err, or else the attach's
// error. A failed copy takes away a write space it made (removed says it
// did, so the copy's reservation no longer holds it): a stage that is
// tried again makes it anew, and a stage let go after an error kubelet
// takes as final keeps only the copy (Abandon). One made before (what
// pods wrote before a Release) is left as it is.
func (c *Copy) settleWrites(volumeID string, a <-chan writesAttached, err error) (removed bool, _ error) {
	if a == nil {
		return false, err
	}
	got := <-a
	if err == nil {
		err = got.err
	} else if got.err != nil {
		c.Log.Warn("the write space of a failed copy could not be attached either", "volume", volumeID, "err", got.err)
	}
	if err != nil && got.made {
		if rerr := diskimage.Remove(c.writesImage(volumeID), c.writesDir(volumeID)); rerr != nil {
			c.Log.Warn("the write space a failed copy made is left", "volume", volumeID, "err", rerr)
		}
		// The image may be gone though the directory is not.
		removed = diskimage.Size(c.writesImage(volumeID)) == 0
	}
	return removed, err
}

// writesInUse answers fault.Unavailable while an overlay still uses the
// volume's write space: pods of an earlier stage whose staging mount went
// away (a staging path moved, an unmount by hand) hold binds of it. A new
// copy would change the layer beneath it and a second overlay would share
// its upper and work directories, which overlayfs leaves undefined, so
// the volume is staged again once those pods are unpublished.
func (c *Copy) writesInUse(volumeID string) error {
	upper := "upperdir=" + escapeOption(filepath.Join(c.writesDir(volumeID), "upper"))
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("overlay"))
	if err != nil {
		return fmt.Errorf("%w: reading mountinfo: %v", fault.Unavailable, err)
	}
	for _, m := range mounts {
		if slices.Contains(strings.Split(m.VFSOptions, ","), upper) {
			return fmt.Errorf("%w: the volume's write space is still mounted at %s for pods of an earlier stage; the copy is staged again once they are unpublished", fault.Unavailable, m.Mountpoint)
		}
	}
	return nil
}

// escapeOption is v as the kernel shows an overlay's path option in
// mountinfo: each space, tab, newline and backslash as a backslash and
// three octal digits (seen on Linux 6.18: "a b=c" shows as "a\040b=c").
// Commas, which would end the option, never get this far
// (mountWritable refuses them).
func escapeOption(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if strings.IndexByte(" \t\n\\", v[i]) >= 0 {
			fmt.Fprintf(&b, "\\%03o", v[i])
			continue
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

// mountWritable mounts the overlay of the volume's write space (made or
// attached again) over its copy at staging.
//
// The overlay runs without an index, redirects or metadata-only copy-up:
// the copier updates a kept copy between stages, which overlayfs allows
// only without them.
func (c *Copy) mountWritable(volumeID, staging string) error {
	data, writes := filepath.Join(c.dir(volumeID), "data"), c.writesDir(volumeID)
	upper, work := filepath.Join(writes, "upper"), filepath.Join(writes, "work")
	for _, p := range []string{data, upper, work} {
		if strings.ContainsAny(p, ",:\\") {
			return fmt.Errorf("%w: the state directory path %q has a character overlayfs options cannot hold (, : \\)", fault.Precondition, p)
		}
	}
	if err := c.attachWrites(volumeID); err != nil {
		return err
	}
	for _, d := range []string{upper, work} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	// The overlay's root shows the upper directory's owner and mode:
	// give it the copy root's (presentCopy set them from the flags).
	var st unix.Stat_t
	if err := unix.Stat(data, &st); err != nil {
		return err
	}
	if err := os.Chown(upper, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	if err := unix.Chmod(upper, st.Mode&0o7777); err != nil {
		return err
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s,index=off,redirect_dir=off,metacopy=off,xino=off", data, upper, work)
	if err := unix.Mount("overlay", staging, "overlay", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("%w: mounting the copy with its write space at %s: %v", fault.Unavailable, staging, err)
	}
	return nil
}

// writesReserve is what a writable volume's write space takes: the size of
// its image when there is one (an attach keeps an existing image's size,
// whatever the flag says now), else the size a new one gets.
func (c *Copy) writesReserve(volumeID string) int64 {
	if n := diskimage.Size(c.writesImage(volumeID)); n > 0 {
		return n
	}
	return c.writeSpace()
}

// dropWrites removes the volume's write space and what the pods wrote.
// With keep, the copy stays reserved without it (a kept copy).
func (c *Copy) dropWrites(volumeID string, keep bool) error {
	size := diskimage.Size(c.writesImage(volumeID))
	if err := diskimage.Remove(c.writesImage(volumeID), c.writesDir(volumeID)); err != nil {
		return err
	}
	if !keep {
		return nil
	}
	return c.Disk.Shrink(volumeID, size)
}
