package copier

import (
	"path"
	"strings"
	"unicode/utf8"
)

// Limits of the node filesystems a copy lands on.
const (
	maxNameBytes = 255
	maxPathBytes = 4000
)

// localPath maps an object key to a path relative to the copy root, or
// returns why the key cannot be a file there. A key never maps outside the
// root: absolute keys, ".." and "." segments, empty segments, NUL bytes and
// names too long for the filesystem are refused.
func localPath(key string) (string, string) {
	switch {
	case key == "":
		return "", "empty key"
	case !utf8.ValidString(key):
		return "", "not valid UTF-8"
	case strings.ContainsRune(key, 0):
		return "", "contains a NUL byte"
	case strings.HasPrefix(key, "/"):
		return "", "absolute path"
	case len(key) > maxPathBytes:
		return "", "path too long for the filesystem"
	}
	for _, seg := range strings.Split(key, "/") {
		switch {
		case seg == "":
			return "", "empty path segment"
		case seg == "." || seg == "..":
			return "", `"." or ".." segment`
		case len(seg) > maxNameBytes:
			return "", "name too long for the filesystem"
		}
	}
	if path.Clean(key) != key {
		return "", "not a clean path"
	}
	return key, ""
}

// Skip is an object the copy left out, and why.
type Skip struct {
	Key    string `json:"key"`
	Reason string `json:"reason"`
}

// resolveConflicts drops files whose path is also a directory (a key "a"
// next to keys "a/..."): the directory wins, the file is skipped.
func resolveConflicts(files []File) ([]File, []Skip) {
	dirs := map[string]bool{}
	for _, f := range files {
		for d := path.Dir(f.Path); d != "."; d = path.Dir(d) {
			if dirs[d] {
				break
			}
			dirs[d] = true
		}
	}
	var kept []File
	var skipped []Skip
	for _, f := range files {
		if dirs[f.Path] {
			skipped = append(skipped, Skip{Key: f.Key, Reason: "is also a directory prefix of other keys"})
			continue
		}
		kept = append(kept, f)
	}
	return kept, skipped
}
