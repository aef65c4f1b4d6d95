package ocimage

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// skipped are package paths an image does not need.
var skipped = []string{"/usr/share/doc/", "/usr/share/man/", "/usr/share/locale/", "/usr/share/lintian/", "/usr/share/info/", "/usr/share/bug/"}

// generated are files a package's install script writes, which dpkg does
// not list.
var generated = map[string][]string{
	"ca-certificates": {"/etc/ssl/certs/ca-certificates.crt"},
}

// AddDebianPackages adds the files of installed Debian packages (as dpkg
// lists them, without documentation) and of the ones their install scripts
// generate, then the shared libraries every ELF file added so far loads.
func (t Tree) AddDebianPackages(pkgs ...string) error {
	for _, p := range pkgs {
		out, err := exec.Command("dpkg-query", "-L", p).Output()
		if err != nil {
			return fmt.Errorf("dpkg-query -L %s (is it installed?): %w", p, err)
		}
	files:
		for _, f := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if f == "" || f == "/." {
				continue
			}
			for _, s := range skipped {
				if strings.HasPrefix(f+"/", s) {
					continue files
				}
			}
			if err := t.AddHost(f); err != nil {
				return fmt.Errorf("package %s: %w", p, err)
			}
		}
		for _, f := range generated[p] {
			if err := t.AddHost(f); err != nil {
				return fmt.Errorf("package %s: %w", p, err)
			}
		}
	}
	return t.AddLibraries()
}

var lddPath = regexp.MustCompile(`(?m)(?:=> )?(/\S+) \(0x`)

// AddLibraries adds the shared libraries (and the dynamic loader) that the
// ELF files in t load, as ldd resolves them on this host.
func (t Tree) AddLibraries() error {
	for _, e := range t {
		if e.Src == "" || !isELF(e.Src) {
			continue
		}
		out, err := exec.Command("ldd", e.Src).Output()
		if err != nil {
			continue // ldd refuses static binaries and some loaders
		}
		for _, m := range lddPath.FindAllStringSubmatch(string(out), -1) {
			if err := t.AddHost(m[1]); err != nil {
				return fmt.Errorf("%s needs %s: %w", e.Src, m[1], err)
			}
		}
	}
	return nil
}

// isELF reports whether f is an ELF file.
func isELF(f string) bool {
	fh, err := os.Open(f)
	if err != nil {
		return false
	}
	defer fh.Close()
	head := make([]byte, 4)
	if _, err := fh.Read(head); err != nil || !bytes.Equal(head, []byte("\x7fELF")) {
		return false
	}
	return true
}

// HostCodename is VERSION_CODENAME of this host's /etc/os-release.
func HostCodename() (string, error) {
	f, err := os.Open("/etc/os-release")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VERSION_CODENAME="); ok {
			return strings.Trim(v, `"`), nil
		}
	}
	return "", fmt.Errorf("no VERSION_CODENAME in /etc/os-release")
}

// AddBinaries adds the host files srcs into dir of the image, mode 0755.
func (t Tree) AddBinaries(dir string, srcs ...string) {
	for _, s := range srcs {
		t.Add(Entry{Path: filepath.Join(dir, filepath.Base(s)), Src: s, Mode: 0o755})
	}
}
