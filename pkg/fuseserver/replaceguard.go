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

// replaceGuard answers what rclone's VFS does not check when a name is
// created or renamed over: it drops the flags of renameat2 (rclone
// v1.76.0's mount2 node), renames a directory by moving its objects one
// by one over whatever the target holds, and creates a new file wherever
// its listing shows no name, also where an object written outside sits
// that neither the kernel nor the listing knows yet (the new file is then
// uploaded over it). It sits outside every layer that records or acts on
// a rename or a create.
//
// Contract:
//   - RENAME_EXCHANGE and RENAME_WHITEOUT answer EINVAL: rclone would
//     replace the target instead of swapping the two, and makes no
//     whiteout.
//   - A rename follows POSIX on its target: a directory onto a directory
//     with entries answers ENOTEMPTY, onto a file ENOTDIR; a file onto a
//     directory EISDIR; with RENAME_NOREPLACE anything there EEXIST.
//   - A create with O_EXCL and a mknod answer EEXIST when the name holds
//     a file or directory the VFS shows, or an object (keys written
//     outside below a name the listing lacks are not looked for: the new
//     file then hides their directory). A create without O_EXCL or
//     O_TRUNC (touch, an append, open-or-create) of a name only an object
//     holds opens that object as it is, instead of replacing it with an
//     empty file.
//   - What the VFS does not show (files not yet uploaded it does show) is
//     asked of the store, because the kernel's lookup and rclone's listing
//     can both be older than an object written outside: for a directory's
//     rename and RENAME_NOREPLACE an object at the target (a HEAD) and
//     keys below it (one listing page where the store allows it), for
//     those creates an object at the name. A name found there has rclone
//     read the listing that lacked it again, so lookups, stats and unlinks
//     see it too, and a create without O_TRUNC is refused (EIO) when a
//     lookup through the server still misses it. A file's plain rename is
//     checked against the VFS only (a listing per rename cost a quarter of
//     the rename rate on loopback; what it would catch, keys written
//     outside below the target, only hides the file behind a directory of
//     its name). When the store cannot answer within existsCheckTimeout,
//     or a directory's path is unknown, the call answers EIO. (A listing
//     rclone itself reads again, of a directory target the store holds
//     nothing below, is not bounded by existsCheckTimeout.)
//   - An object written outside between the check and the rename or the
//     upload is still replaced: object stores have no conditional rename,
//     and rclone uploads without conditions. A create with O_TRUNC over an
//     object others wrote within dir-cache-time replaces it, as it would a
//     listed one.
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
	if st := g.renameTarget(in, oldName, newName); !st.Ok() {
		return st
	}
	return g.RawFileSystem.Rename(c, in, oldName, newName)
}

// Mknod never replaces (rclone's Mknod creates the file and uploads it
// empty).
func (g replaceGuard) Mknod(c <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	if st := g.absent(in.NodeId, name); !st.Ok() {
		return st
	}
	return g.RawFileSystem.Mknod(c, in, name, out)
}

func (g replaceGuard) Create(c <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	switch {
	case in.Flags&unix.O_EXCL != 0:
		if st := g.absent(in.NodeId, name); !st.Ok() {
			return st
		}
	case in.Flags&unix.O_TRUNC == 0:
		if st := g.learn(c, &in.InHeader, name); !st.Ok() {
			return st
		}
	}
	return g.RawFileSystem.Create(c, in, name, out)
}

// nameKind is what a name holds.
type nameKind int

const (
	nameFree     nameKind = iota
	nameFile              // a file in the VFS, or an object in the store
	nameDir               // a directory: in the VFS, or keys below the name in the store
	nameEmptyDir          // a directory the VFS shows without entries, and no keys below it
)

// renameTarget answers what POSIX asks of a rename's target and rclone
// does not check (its directory rename moves the objects one by one over
// whatever is at the target): see the contract.
func (g replaceGuard) renameTarget(in *fuse.RenameIn, oldName, newName string) fuse.Status {
	from, ok1 := g.paths.path(in.NodeId)
	to, ok2 := g.paths.path(in.Newdir)
	if !ok1 || !ok2 {
		g.log.Warn("a rename under a directory whose path is unknown; refused", "from", oldName, "to", newName)
		return fuse.EIO
	}
	src, dst := path.Join(from, oldName), path.Join(to, newName)
	sn, err := g.v.Stat(src)
	if err != nil || src == dst {
		return fuse.OK // rclone answers
	}
	dn, _ := g.v.Stat(dst)
	if dn == sn {
		return fuse.OK // another form of the same name (rclone matches NFC and NFD)
	}
	noReplace, srcDir := in.Flags&unix.RENAME_NOREPLACE != 0, sn.IsDir()
	store := noReplace || srcDir // a file's plain rename asks the VFS only
	kind, err := g.look(dst, dn, store, store)
	if err != nil {
		g.log.Warn("a rename: the store could not say what the target holds; refused", "to", dst, "err", err)
		return fuse.EIO
	}
	switch {
	case kind == nameFree:
		return fuse.OK
	case noReplace:
		return fuse.Status(unix.EEXIST)
	case !srcDir && kind != nameFile:
		return fuse.Status(unix.EISDIR)
	case srcDir && kind == nameFile:
		return fuse.Status(unix.ENOTDIR)
	case srcDir && kind == nameDir:
		return fuse.Status(unix.ENOTEMPTY)
	}
	return fuse.OK
}

// absent answers OK when nothing is at name in directory dir, in the VFS
// or in the store; EEXIST when something is.
func (g replaceGuard) absent(dir uint64, name string) fuse.Status {
	_, kind, st := g.lookName(dir, name)
	if st.Ok() && kind != nameFree {
		return fuse.Status(unix.EEXIST)
	}
	return st
}

// learn makes sure that the directory h names lists an object at name
// that only the store showed, so that a create without O_TRUNC opens it
// instead of replacing it with a new file. rclone creates through the
// parent node's own directory, which can be another object than the one a
// walk from the root reaches (rclone forgets idle directories and makes
// new ones, while the kernel keeps its node): the name is looked up
// through the server's own stack, as the create will find it, and the
// create is refused (EIO) when that lookup still misses it.
func (g replaceGuard) learn(c <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	p, kind, st := g.lookName(h.NodeId, name)
	if !st.Ok() || kind == nameFree {
		return st
	}
	var out fuse.EntryOut
	if st := g.RawFileSystem.Lookup(c, h, name, &out); !st.Ok() {
		g.log.Warn("a create of a name an object holds: the directory's listing does not show it; refused", "path", p, "status", st)
		return fuse.EIO
	}
	g.RawFileSystem.Forget(out.NodeId, 1) // the kernel never saw this lookup
	return fuse.OK
}

// lookName is look (with a HEAD) of name in directory dir, for a create;
// EIO (logged) when dir's path is unknown or the store cannot answer.
func (g replaceGuard) lookName(dir uint64, name string) (string, nameKind, fuse.Status) {
	d, ok := g.paths.path(dir)
	if !ok {
		g.log.Warn("a create under a directory whose path is unknown; refused", "name", name)
		return "", nameFree, fuse.EIO
	}
	p := path.Join(d, name)
	n, _ := g.v.Stat(p)
	kind, err := g.look(p, n, true, false)
	if err != nil {
		g.log.Warn("a create: the store could not say whether the name is taken; refused", "path", p, "err", err)
		return p, nameFree, fuse.EIO
	}
	return p, kind, fuse.OK
}

// look tells what p holds: the VFS's node n (from v.Stat(p), nil when
// the VFS shows none) if there is one, else the store's (an object, with
// head; keys below p, with list). With list, a directory the VFS shows is
// looked for in the store too, for entries its listing lacks. Whatever
// only the store showed has rclone read the listing that lacked it again,
// so that lookups, stats and unlinks see it.
func (g replaceGuard) look(p string, n vfs.Node, head, list bool) (nameKind, error) {
	ctx, cancel := context.WithTimeout(context.Background(), existsCheckTimeout)
	defer cancel()
	if n != nil {
		if !n.IsDir() {
			return nameFile, nil
		}
		d, ok := n.(*vfs.Dir)
		if !list || !ok {
			return nameDir, nil
		}
		// The store first (one page, bounded); the VFS's entries, files
		// not yet uploaded among them, only when it holds nothing there.
		if below, err := g.below(ctx, p); err != nil || below {
			if below {
				g.relist(p)
			}
			return nameDir, err
		}
		if items, err := d.ReadDirAll(); err != nil || len(items) > 0 {
			return nameDir, err
		}
		return nameEmptyDir, nil
	}
	kind := nameFree
	if head {
		_, err := g.v.Fs().NewObject(ctx, p)
		switch {
		case err == nil:
			kind = nameFile
		case errors.Is(err, rfs.ErrorIsDir), errors.Is(err, rfs.ErrorNotAFile):
			kind = nameDir
		case !errors.Is(err, rfs.ErrorObjectNotFound):
			return nameFree, err
		}
	}
	if kind == nameFree && list {
		below, err := g.below(ctx, p)
		if err != nil {
			return nameFree, err
		}
		if below {
			kind = nameDir
		}
	}
	if kind != nameFree {
		g.relist(path.Dir(p))
	}
	return kind, nil
}

// relist has rclone read the listing of directory dir again at its next
// use; entries it holds that the store lacks, such as files not yet
// uploaded, are kept. (ForgetPath of an entry marks the entry's directory
// stale, and only that.)
func (g replaceGuard) relist(dir string) {
	if root, err := g.v.Root(); err == nil {
		root.ForgetPath(path.Join(dir, "entry"), rfs.EntryObject)
	}
}

// below reports whether the store holds keys below p (one listing page
// where the store allows stopping there).
func (g replaceGuard) below(ctx context.Context, p string) (bool, error) {
	f := g.v.Fs()
	errFound := errors.New("found") // stops the listing at its first entry
	found := func(entries rfs.DirEntries) error {
		if len(entries) > 0 {
			return errFound
		}
		return nil
	}
	var err error
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
