package ocimage

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestLayer: host files, symlinks (followed and kept), generated files and
// directories land in the layer with their parents, sorted, owned by root,
// with zero timestamps, and the same tree gives the same bytes.
func TestLayer(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "real")
	if err := os.WriteFile(bin, []byte("#!binary"), 0o750); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink("real", link); err != nil {
		t.Fatal(err)
	}
	tree := Tree{}
	if err := tree.AddHost(link); err != nil {
		t.Fatal(err)
	}
	tree.Add(Entry{Path: "/etc/passwd", Data: []byte("root:x:0:0::/:/x\n")})
	tree.Add(Entry{Path: "/tmp", Dir: true, Mode: 0o777 | os.ModeSticky})
	tree.AddBinaries("/usr/local/bin", bin)
	a, err := tree.Layer()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := tree.Layer()
	if !bytes.Equal(a, b) {
		t.Fatal("the same tree gave two different layers")
	}
	type entry struct {
		typ        byte
		mode       int64
		link, body string
	}
	got := map[string]entry{}
	var order []string
	tr := tar.NewReader(bytes.NewReader(a))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.IsZero() && h.ModTime.Unix() != 0 {
			t.Errorf("%s: uid %d gid %d mtime %v", h.Name, h.Uid, h.Gid, h.ModTime)
		}
		body, _ := io.ReadAll(tr)
		got[h.Name] = entry{h.Typeflag, h.Mode, h.Linkname, string(body)}
		order = append(order, h.Name)
	}
	rel := dir[1:]
	want := map[string]entry{
		"etc/":               {tar.TypeDir, 0o755, "", ""},
		"etc/passwd":         {tar.TypeReg, 0o644, "", "root:x:0:0::/:/x\n"},
		"tmp/":               {tar.TypeDir, 0o1777, "", ""},
		rel + "/link":        {tar.TypeSymlink, 0o777, "real", ""},
		rel + "/real":        {tar.TypeReg, 0o750, "", "#!binary"},
		"usr/":               {tar.TypeDir, 0o755, "", ""},
		"usr/local/":         {tar.TypeDir, 0o755, "", ""},
		"usr/local/bin/":     {tar.TypeDir, 0o755, "", ""},
		"usr/local/bin/real": {tar.TypeReg, 0o755, "", "#!binary"},
	}
	for p := filepath.Dir(dir); p != "/"; p = filepath.Dir(p) {
		want[p[1:]+"/"] = entry{tar.TypeDir, 0o755, "", ""}
	}
	want[rel+"/"] = entry{tar.TypeDir, 0o755, "", ""}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("layer:\n got %v\nwant %v", got, want)
	}
	for i := 1; i < len(order); i++ {
		if order[i-1] > order[i] {
			t.Fatalf("entries not sorted: %q before %q", order[i-1], order[i])
		}
	}
}

// TestWrite: the tarball is a docker archive with the tag, one layer and
// the entrypoint.
func TestWrite(t *testing.T) {
	tree := Tree{}
	tree.Add(Entry{Path: "/hello", Data: []byte("hi"), Mode: 0o755})
	img, err := tree.Image(Config{Entrypoint: []string{"/hello"}})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "img.tar")
	if err := Write(out, "example.com/x/hello:1.0", img); err != nil {
		t.Fatal(err)
	}
	back, err := tarball.ImageFromPath(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := back.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := back.Layers()
	if len(layers) != 1 || !reflect.DeepEqual(cfg.Config.Entrypoint, []string{"/hello"}) || cfg.OS != "linux" || cfg.Architecture != "amd64" {
		t.Fatalf("image: %d layers, config %+v", len(layers), cfg)
	}
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(out) })
	if err != nil || len(m) != 1 || !reflect.DeepEqual(m[0].RepoTags, []string{"example.com/x/hello:1.0"}) {
		t.Fatalf("manifest %+v, %v", m, err)
	}
}
