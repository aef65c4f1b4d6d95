// Package keyfilter hides, in an rclone Fs's directory listings, the
// entries no node filesystem can show as they are: a name that is empty
// (a key "a//b"), "." or ".." (keys "./x", "a/../b", which rclone shows as
// full-width dots), longer than 255 bytes or holding a NUL byte, and a file whose name is also a directory
// in the same listing (keys "a" and "a/b": the directory wins, as in COPY).
// Such keys are left out of the listing instead of making the whole
// directory fail to list or show a bogus entry; every other operation
// passes to the wrapped Fs unchanged.
package keyfilter

import (
	"context"
	"strings"

	"github.com/rclone/rclone/fs"
)

// maxName is the longest name a Linux filesystem (and FUSE lookup) takes.
const maxName = 255

// Fs is an fs.Fs with the listings filtered.
type Fs struct {
	fs.Fs
	features *fs.Features
	hide     func(remote string) bool
}

// Wrap returns base with its listings filtered. hide, when not nil, also
// leaves out every entry whose remote (path from base's root) it reports:
// the driver's own objects (bucket.IsMeta).
func Wrap(base fs.Fs, hide func(remote string) bool) *Fs {
	f := &Fs{Fs: base, hide: hide}
	ft := *base.Features()
	ft.UnWrap = func() fs.Fs { return base }
	if dm := ft.DirMove; dm != nil {
		ft.DirMove = func(ctx context.Context, src fs.Fs, srcRemote, dstRemote string) error {
			if w, ok := src.(*Fs); ok {
				src = w.Fs
			}
			return dm(ctx, src, srcRemote, dstRemote)
		}
	}
	if lr := ft.ListR; lr != nil {
		ft.ListR = func(ctx context.Context, dir string, callback fs.ListRCallback) error {
			return lr(ctx, dir, func(entries fs.DirEntries) error { return callback(f.drop(filterDeep(entries))) })
		}
	}
	if lp := ft.ListP; lp != nil {
		ft.ListP = func(ctx context.Context, dir string, callback fs.ListRCallback) error {
			return lp(ctx, dir, func(entries fs.DirEntries) error { return callback(f.drop(Filter(dir, entries))) })
		}
	}
	f.features = &ft
	return f
}

// Features returns the wrapped Fs's features with the listings filtered.
func (f *Fs) Features() *fs.Features { return f.features }

// List lists dir of the wrapped Fs without the entries it cannot show.
func (f *Fs) List(ctx context.Context, dir string) (fs.DirEntries, error) {
	entries, err := f.Fs.List(ctx, dir)
	if err != nil {
		return nil, err
	}
	return f.drop(Filter(dir, entries)), nil
}

// drop leaves out the entries hide reports, in place.
func (f *Fs) drop(entries fs.DirEntries) fs.DirEntries {
	if f.hide == nil {
		return entries
	}
	kept := entries[:0]
	for _, e := range entries {
		if !f.hide(e.Remote()) {
			kept = append(kept, e)
		}
	}
	return kept
}

// Filter drops, from a listing of dir, the entries whose name cannot be
// shown (see the package comment) and files that are also a directory
// of the listing. It filters in place.
func Filter(dir string, entries fs.DirEntries) fs.DirEntries {
	prefix := ""
	if dir != "" {
		prefix = dir + "/"
	}
	dirs := map[string]bool{}
	for _, e := range entries {
		if _, ok := e.(fs.Directory); ok {
			dirs[e.Remote()] = true
		}
	}
	kept := entries[:0]
	for _, e := range entries {
		remote := e.Remote()
		name, ok := strings.CutPrefix(remote, prefix)
		if !ok || !validName(name) {
			fs.Logf(nil, "hiding key %q: it cannot be a file name", remote)
			continue
		}
		if _, isObj := e.(fs.Object); isObj && dirs[remote] {
			fs.Logf(nil, "hiding key %q: it is also a directory", remote)
			continue
		}
		kept = append(kept, e)
	}
	return kept
}

// filterDeep drops the entries of a recursive listing with any segment
// that cannot be shown.
func filterDeep(entries fs.DirEntries) fs.DirEntries {
	kept := entries[:0]
	for _, e := range entries {
		ok := true
		for _, seg := range strings.Split(e.Remote(), "/") {
			ok = ok && validName(seg)
		}
		if ok {
			kept = append(kept, e)
		}
	}
	return kept
}

// validName reports whether name can be one entry of a directory.
func validName(name string) bool { return NameProblem(name) == "" }

// NameProblem says why name cannot be one entry of a directory, or "".
// rclone shows a key's "." and ".." segments as "．" and "．．" (full-width
// dots, its dot encoding); those are refused like the segments they stand
// for.
func NameProblem(name string) string {
	switch name {
	case "":
		return "empty path segment"
	case ".", "..", "．", "．．":
		return `"." or ".." segment`
	}
	switch {
	case len(name) > maxName:
		return "name too long for the filesystem"
	case strings.ContainsRune(name, 0):
		return "contains a NUL byte"
	case strings.ContainsRune(name, '/'):
		return "contains a slash"
	}
	return ""
}
