package fuseserver

import (
	"context"
	"errors"
	"log/slog"
	"path"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	rfs "github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/vfs"
	"golang.org/x/sys/unix"
)

// existsCheckTimeout bounds replaceGuard's lookup in the store.
const existsCheckTimeout = 30 * time.Second

// replaceGuard answers what rclone's VFS does not honour when a name must
// not be replaced: the flags of renameat2 (rclone v1.76.0's mount2 node
// takes them and drops them), and O_EXCL and mknod on a name that an
// object written outside holds while neither the kernel nor rclone's
// listing knows it yet (rclone would create a new file and upload it over
// the object). It sits outside every layer that records or acts on a
// rename or a create.
//
// Contract:
//   - RENAME_EXCHANGE and RENAME_WHITEOUT answer EINVAL: rclone would
//     replace the target instead of swapping the two, and makes no
//     whiteout.
//   - RENAME_NOREPLACE, a create with O_EXCL and a mknod answer EEXIST
//     when the name holds a file or directory in the VFS (files not yet
//     uploaded included) or an object in the store. The store is asked
//     (one HEAD) because the kernel's lookup and rclone's listing can both
//     be older than an object written outside. EIO when the directory has
//     no known path or the store cannot answer. An object written outside
//     between the check and the rename or upload is still replaced: object
//     stores have no conditional rename, and rclone uploads without
//     conditions.
//   - Every other rename and create passes unchanged: a create without
//     O_EXCL over an object others wrote within dir-cache-time replaces it
//     (the README's consistency row).
type replaceGuard struct {
	fuse.RawFileSystem
	v     *vfs.VFS
	paths *pathTable
	log   *slog.Logger
}

func (g replaceGuard) Rename(c <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	if in.Flags&(unix.RENAME_EXCHANGE|unix.RENAME_WHITEOUT) != 0 {
		return fuse.EINVAL
	}
	if in.Flags&unix.RENAME_NOREPLACE != 0 {
		if st := g.absent(in.Newdir, newName); !st.Ok() {
			return st
		}
	}
	return g.RawFileSystem.Rename(c, in, oldName, newName)
}

// Mknod never replaces (rclone's creates the file and uploads it empty).
func (g replaceGuard) Mknod(c <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	if st := g.absent(in.NodeId, name); !st.Ok() {
		return st
	}
	return g.RawFileSystem.Mknod(c, in, name, out)
}

func (g replaceGuard) Create(c <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	if in.Flags&unix.O_EXCL != 0 {
		if st := g.absent(in.NodeId, name); !st.Ok() {
			return st
		}
	}
	return g.RawFileSystem.Create(c, in, name, out)
}

// absent answers OK when nothing is at name in directory dir, in the VFS
// or in the store; EEXIST when something is.
func (g replaceGuard) absent(dir uint64, name string) fuse.Status {
	d, ok := g.paths.path(dir)
	if !ok {
		g.log.Warn("an exclusive rename or create under a directory whose path is unknown; refused", "name", name)
		return fuse.EIO
	}
	p := path.Join(d, name)
	if _, err := g.v.Stat(p); err == nil {
		return fuse.Status(unix.EEXIST)
	}
	ctx, cancel := context.WithTimeout(context.Background(), existsCheckTimeout)
	defer cancel()
	_, err := g.v.Fs().NewObject(ctx, p)
	switch {
	case err == nil, errors.Is(err, rfs.ErrorIsDir):
		return fuse.Status(unix.EEXIST)
	case errors.Is(err, rfs.ErrorObjectNotFound), errors.Is(err, rfs.ErrorNotAFile):
		return fuse.OK
	default:
		g.log.Warn("an exclusive rename or create: the store could not say whether the name is taken; refused", "path", p, "err", err)
		return fuse.EIO
	}
}
