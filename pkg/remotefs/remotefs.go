// Package remotefs turns a store account's rclone options
// (store.Backend.Rclone) into a live rclone filesystem: the one place those
// options enter rclone, for the FUSE server, COPY and `storage upload`.
//
// The options never enter rclone's process-wide configuration: each call
// builds its own option map, so the long-lived driver, which copies many
// volumes at once, neither shares nor keeps any volume's settings or
// credentials after the call. Importing this package registers every store
// kind's backend and rclone's local backend (local paths, the VFS cache).
package remotefs

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/config/configmap"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/store"

	// Every store kind's rclone backend, registered by its store package.
	_ "github.com/bucket-csi/bucket-csi/pkg/stores"
	// Local paths (upload sources) and the VFS disk cache, which silently
	// turns off without it.
	_ "github.com/rclone/rclone/backend/local"
)

// Open returns the filesystem at path ("<bucket>[/<prefix>]") of the
// account opts describe. Credential files among opts (store.FilePrefix)
// are written into privateDir (created 0700 when needed), which the caller
// removes once the filesystem is no longer used. name names the
// filesystem: rclone derives the VFS cache directory from it, so a cached
// mount must keep it across restarts.
//
// A prefix is always opened as a directory, never as an object: given a
// path below a bucket, rclone's backends look it up as an object first
// and, finding one of that exact name (or on S3, failing to look it up
// and to list it), answer fs.ErrorIsFile with a filesystem rooted at the
// prefix's parent, which would show the prefix's siblings. S3 and OCI skip
// that lookup for a path ending in "/", which Open gives them; GCS and
// Azure do not, and there an object named like the prefix is refused
// (fault.Precondition).
//
// Open never returns a filesystem with an error, and every error it
// returns has a pkg/fault kind: an unknown backend type is
// fault.Invalid, and an error of rclone's or of the credential files,
// which carry none, is fault.Unavailable (retried), as a FUSE server's
// unkinded error is (fuseproto.ParseStatusLine).
func Open(ctx context.Context, opts map[string]string, name, privateDir, path string) (fs.Fs, error) {
	f, err := open(ctx, opts, name, privateDir, path)
	if err != nil && fault.Kind(err) == "" {
		return nil, fmt.Errorf("%w: %w", fault.Unavailable, err)
	}
	return f, err
}

// open is Open without the default kind.
func open(ctx context.Context, opts map[string]string, name, privateDir, path string) (fs.Fs, error) {
	opts, err := store.Materialize(opts, privateDir)
	if err != nil {
		return nil, fmt.Errorf("writing credential files: %w", err)
	}
	info, err := fs.Find(opts["type"])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", fault.Invalid, err)
	}
	// As fs.NewFs builds it, with opts in place of a config file section:
	// flags and RCLONE_* environment variables, then opts, then defaults
	// (a bare map would leave every unset option at zero).
	m := fs.ConfigMap(info.Prefix, info.Options, name, configmap.Simple(opts))
	path = strings.TrimRight(path, "/")
	asDir := path
	if strings.Contains(path, "/") {
		asDir += "/"
	}
	f, err := info.NewFs(ctx, name, asDir, m)
	if errors.Is(err, fs.ErrorIsFile) {
		bucket, prefix, _ := strings.Cut(path, "/")
		return nil, fmt.Errorf("%w: bucket %q holds an object named %q, the prefix itself, and rclone's %s backend would then show the directory above the prefix; rename or delete that object", fault.Precondition, bucket, prefix, info.Name)
	}
	if err != nil {
		return nil, err
	}
	return f, nil
}
