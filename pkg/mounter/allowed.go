package mounter

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/fuseproto"
)

// Allowed are the directories a mounter host serves (the kubelet
// directory, the driver's state directory), absolute and with symlinks
// resolved (NewAllowed).
type Allowed []string

// NewAllowed resolves dirs (each must exist) into an Allowed.
func NewAllowed(dirs []string) (Allowed, error) {
	var out Allowed
	for _, d := range dirs {
		if d = strings.TrimSpace(d); d == "" {
			continue
		}
		if !filepath.IsAbs(d) {
			return nil, fmt.Errorf("allowed directory %q is not absolute", d)
		}
		r, err := filepath.EvalSymlinks(d)
		if err != nil {
			return nil, fmt.Errorf("allowed directory: %w", err)
		}
		out = append(out, r)
	}
	return out, nil
}

// Check refuses, with fault.Invalid naming the path and the allowed
// directories, a request whose mount point, cache directory, private
// directory, control socket or log path is not absolute and clean (no
// "..", no "//"), or does not lie within an allowed directory once the
// symlinks of its existing part are resolved.
func (a Allowed) Check(cfg *fuseproto.Config, logPath string) error {
	for _, p := range []struct{ what, path string }{
		{"mount point", cfg.MountPoint},
		{"cache directory", cfg.CacheDir},
		{"private directory", cfg.PrivateDir},
		{"control socket", cfg.ControlSocket},
		{"log path", logPath},
	} {
		if p.path == "" && p.what != "mount point" && p.what != "log path" {
			continue
		}
		if err := a.check(p.path); err != nil {
			return fmt.Errorf("%w: %s %q refused: %v; the mounter host serves only paths below %s (its --allowed-dirs)", fault.Invalid, p.what, p.path, err, strings.Join(a, ", "))
		}
	}
	return nil
}

func (a Allowed) check(p string) error {
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return errors.New("not an absolute, clean path")
	}
	r, err := resolveExisting(p)
	if err != nil {
		return err
	}
	for _, dir := range a {
		if within(dir, r) && r != dir {
			return nil
		}
	}
	if r != p {
		return fmt.Errorf("it resolves to %s", r)
	}
	return errors.New("outside the allowed directories")
}

// within reports whether p is dir or below it, on path boundaries.
func within(dir, p string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// resolveExisting resolves the symlinks of the longest existing prefix of
// the clean absolute path p and appends the rest.
func resolveExisting(p string) (string, error) {
	rest := ""
	for cur := p; ; cur = filepath.Dir(cur) {
		r, err := filepath.EvalSymlinks(cur)
		if err == nil {
			return filepath.Join(r, rest), nil
		}
		if !errors.Is(err, os.ErrNotExist) || cur == "/" {
			return "", err
		}
		rest = filepath.Join(filepath.Base(cur), rest)
	}
}
