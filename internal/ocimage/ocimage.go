// Package ocimage builds single-layer container images from files on this
// machine, without Docker or a registry, and writes them as docker-archive
// tarballs that `ctr images import` and `docker load` accept. The layer is
// reproducible: entries sorted, owned by root, timestamps zero.
package ocimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Entry is one path in the image: a copy of the host file Src (a regular
// file, followed if it is a symlink), a file holding Data, a symlink to
// Link, or a directory.
type Entry struct {
	Path string // absolute path in the image
	Src  string // host file to copy
	Data []byte // contents, when Src is empty
	Link string // symlink target
	Dir  bool
	Mode os.FileMode // permission and sticky bits; 0 takes the host file's (or 0755 for directories)
}

// Tree is the set of paths in an image, by image path; adding a path twice
// keeps the first entry.
type Tree map[string]Entry

// Add adds e and its missing parent directories.
func (t Tree) Add(e Entry) {
	e.Path = path.Clean("/" + e.Path)
	if _, ok := t[e.Path]; ok || e.Path == "/" {
		return
	}
	t[e.Path] = e
	for dir := path.Dir(e.Path); dir != "/"; dir = path.Dir(dir) {
		if _, ok := t[dir]; !ok {
			t[dir] = Entry{Path: dir, Dir: true}
		}
	}
}

// AddHost adds the host path p at the same path in the image, keeping a
// symlink a symlink and adding what it points to as well.
func (t Tree) AddHost(p string) error {
	for range 40 {
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			t.Add(Entry{Path: p, Link: target})
			if !path.IsAbs(target) {
				target = path.Join(path.Dir(p), target)
			}
			p = target
			continue
		case fi.IsDir():
			t.Add(Entry{Path: p, Dir: true, Mode: fi.Mode() & (os.ModePerm | os.ModeSticky)})
		default:
			t.Add(Entry{Path: p, Src: p})
		}
		return nil
	}
	return fmt.Errorf("%s: too many levels of symlinks", p)
}

// Layer returns the tree as an uncompressed tar stream.
func (t Tree) Layer() ([]byte, error) {
	paths := make([]string, 0, len(t))
	for p := range t {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		e := t[p]
		hdr := &tar.Header{Name: strings.TrimPrefix(p, "/"), Format: tar.FormatPAX, Uname: "root", Gname: "root"}
		var src *os.File
		switch {
		case e.Dir:
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, hdr.Name+"/", 0o755
			if e.Mode != 0 {
				hdr.Mode = int64(e.Mode.Perm())
			}
			if e.Mode&os.ModeSticky != 0 {
				hdr.Mode |= 0o1000
			}
		case e.Link != "":
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, e.Link, 0o777
		case e.Src == "":
			hdr.Typeflag, hdr.Size, hdr.Mode = tar.TypeReg, int64(len(e.Data)), 0o644
			if e.Mode != 0 {
				hdr.Mode = int64(e.Mode.Perm())
			}
		default:
			f, err := os.Open(e.Src)
			if err != nil {
				return nil, err
			}
			fi, err := f.Stat()
			if err != nil {
				f.Close()
				return nil, err
			}
			src = f
			hdr.Typeflag, hdr.Size, hdr.Mode = tar.TypeReg, fi.Size(), int64(fi.Mode().Perm())
			if e.Mode != 0 {
				hdr.Mode = int64(e.Mode.Perm())
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if src != nil {
			_, err := io.Copy(tw, src)
			src.Close()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", e.Src, err)
			}
		} else if _, err := tw.Write(e.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Config is the runtime configuration of an image.
type Config struct {
	Entrypoint, Cmd, Env []string
	WorkingDir           string
}

// Image returns a single-layer linux/amd64 image of t with cfg.
func (t Tree) Image(cfg Config) (v1.Image, error) {
	data, err := t.Layer()
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	file, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	file = file.DeepCopy()
	file.OS, file.Architecture = "linux", "amd64"
	file.Config.Entrypoint, file.Config.Cmd, file.Config.WorkingDir = cfg.Entrypoint, cfg.Cmd, cfg.WorkingDir
	file.Config.Env = cfg.Env
	if len(file.Config.Env) == 0 {
		file.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	}
	return mutate.ConfigFile(img, file)
}

// Write writes img as a docker-archive tarball tagged ref.
func Write(out, ref string, img v1.Image) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(out, tag, img)
}
