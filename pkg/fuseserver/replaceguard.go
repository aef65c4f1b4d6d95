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

// existsCheckTimeout bounds replaceGuard's lookups in the store.
const existsCheckTimeout = 10 * time.Second

// replaceGuard answers what rclone's VFS does not honour when a name must
// not be replaced: the flags of renameat2 (rclone v1.76.0's mount2 node
// takes them and drops them), and creates and mknods of a name that an
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
//     uploaded included) or an object in the store; for RENAME_NOREPLACE
//     also when keys lie below the name (a directory: rclone would move
//     a directory's objects over them one by one). The store is asked
//     (a HEAD; for RENAME_NOREPLACE then a listing of the name as a
//     directory, stopped at its first page where the store allows it)
//     because the kernel's lookup and rclone's listing can both be older
//     than an object written outside; a name found there has rclone read
//     its directory's listing again, so stats and unlinks see it too.
//     EIO when the directory has no known path or the store cannot answer
//     within existsCheckTimeout.
//     An object written outside between the check and the rename or
//     upload is still replaced: object stores have no conditional rename,
//     and rclone uploads without conditions.
//   - A create without O_EXCL or O_TRUNC (touch, an append, open-or-
//     create) of a name the VFS does not show, but an object holds, first
//     has rclone read the directory's listing again, so the object is
//     opened as it is, not replaced by an empty file; EIO when the store
//     cannot answer or the new listing still lacks the name.
//   - Every other rename and create passes unchanged: a create with
//     O_TRUNC over an object others wrote within dir-cache-time replaces
//     it, as it would a listed one.
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
		if st := g.absent(in.Newdir, newName, true); !st.Ok() {
			return st
		}
	}
	return g.RawFileSystem.Rename(c, in, oldName, newName)
}

// Mknod never replaces (rclone's creates the file and uploads it empty).
func (g replaceGuard) Mknod(c <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	if st := g.absent(in.NodeId, name, false); !st.Ok() {
		return st
	}
	return g.RawFileSystem.Mknod(c, in, name, out)
}

func (g replaceGuard) Create(c <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	switch {
	case in.Flags&unix.O_EXCL != 0:
		if st := g.absent(in.NodeId, name, false); !st.Ok() {
			return st
		}
	case in.Flags&unix.O_TRUNC == 0:
		if st := g.learn(in.NodeId, name); !st.Ok() {
			return st
		}
	}
	return g.RawFileSystem.Create(c, in, name, out)
}

// absent answers OK when nothing is at name in directory dir, in the VFS
// or in the store (with prefixes, no key below it either); EEXIST when
// something is.
func (g replaceGuard) absent(dir uint64, name string, prefixes bool) fuse.Status {
	_, inVFS, inStore, st := g.taken(dir, name, prefixes)
	if st.Ok() && (inVFS || inStore) {
		return fuse.Status(unix.EEXIST)
	}
	return st
}

// learn makes sure the VFS lists an object at name in directory dir, so
// that a create without O_TRUNC opens it instead of replacing it with a
// new file.
func (g replaceGuard) learn(dir uint64, name string) fuse.Status {
	p, inVFS, inStore, st := g.taken(dir, name, false)
	if !st.Ok() || inVFS || !inStore {
		return st
	}
	if _, err := g.v.Stat(p); err != nil {
		g.log.Warn("a create of a name an object holds: the listing does not show it; refused", "path", p, "err", err)
		return fuse.EIO
	}
	return fuse.OK
}

// taken reports whether name in directory dir (at path p) is a file or
// directory in the VFS, else whether an object holds it in the store
// (with prefixes, or a key below it: a directory rclone does not list
// yet); a status other than OK when that cannot be told. A name found
// only in the store has rclone read its directory's listing again, so
// that lookups, stats and unlinks see it too.
func (g replaceGuard) taken(dir uint64, name string, prefixes bool) (p string, inVFS, inStore bool, st fuse.Status) {
	d, ok := g.paths.path(dir)
	if !ok {
		g.log.Warn("a create or rename under a directory whose path is unknown; refused", "name", name)
		return "", false, false, fuse.EIO
	}
	p = path.Join(d, name)
	if _, err := g.v.Stat(p); err == nil {
		return p, true, false, fuse.OK
	}
	ctx, cancel := context.WithTimeout(context.Background(), existsCheckTimeout)
	defer cancel()
	inStore, err := g.inStore(ctx, p, prefixes)
	if err != nil {
		g.log.Warn("a create or rename: the store could not say whether the name is taken; refused", "path", p, "err", err)
		return p, false, false, fuse.EIO
	}
	if inStore {
		root, err := g.v.Root()
		if err != nil {
			return p, false, true, fuse.EIO
		}
		root.ForgetPath(p, rfs.EntryObject) // the parent's listing is read again
	}
	return p, false, inStore, fuse.OK
}

// inStore reports whether an object is at p or, with prefixes, below it.
func (g replaceGuard) inStore(ctx context.Context, p string, prefixes bool) (bool, error) {
	f := g.v.Fs()
	_, err := f.NewObject(ctx, p)
	switch {
	case err == nil, errors.Is(err, rfs.ErrorIsDir), errors.Is(err, rfs.ErrorNotAFile):
		return true, nil
	case !errors.Is(err, rfs.ErrorObjectNotFound):
		return false, err
	case !prefixes:
		return false, nil
	}
	errFound := errors.New("found") // stops the listing at its first entry
	found := func(entries rfs.DirEntries) error {
		if len(entries) > 0 {
			return errFound
		}
		return nil
	}
	if listP := f.Features().ListP; listP != nil {
		err = listP(ctx, p, found)
	} else {
		var entries rfs.DirEntries
		if entries, err = f.List(ctx, p); err == nil {
			err = found(entries)
		}
	}
	switch {
	case errors.Is(err, errFound):
		return true, nil
	case err == nil, errors.Is(err, rfs.ErrorDirNotFound):
		return false, nil
	default:
		return false, err
	}
}
