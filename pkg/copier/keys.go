package copier

import (
	"cmp"
	"path"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/bucket-csi/bucket-csi/pkg/keyfilter"
)

// maxPathBytes is the longest path a copy writes (PATH_MAX is 4096).
const maxPathBytes = 4000

// localPath maps an object key to a path relative to the copy root, or
// returns why the key cannot be a file there. A key never maps outside the
// root: absolute keys, ".." and "." segments, empty segments, NUL bytes and
// names too long for the filesystem are refused (keyfilter.NameProblem,
// the rule MOUNT listings follow too), and so are names beginning with
// partPrefix, which a download file of another key could take.
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
		if why := keyfilter.NameProblem(seg); why != "" {
			return "", why
		}
		if strings.HasPrefix(seg, partPrefix) {
			return "", "named like the copy's own download files (" + partPrefix + "...)"
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

// maxSkipExamples bounds the skipped keys a copy remembers by name; the
// rest are only counted, so a bucket of hostile keys costs no memory.
const maxSkipExamples = 20

// skipList counts the objects a copy left out and keeps the first few;
// safe for concurrent use.
type skipList struct {
	mu    sync.Mutex
	count int
	first []Skip
}

func (l *skipList) add(key, reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.count++
	if len(l.first) < maxSkipExamples {
		l.first = append(l.first, Skip{Key: key, Reason: reason})
	}
}

func (l *skipList) result() (int, []Skip) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.count, slices.Clone(l.first)
}

// comparePaths orders paths segment by segment ("a" < "a/b" < "a-b"):
// byte order with "/" below every other byte, which a path never holds as
// a NUL. It is the order filepath.WalkDir visits a tree in, and it puts
// every "a/..." right after "a".
func comparePaths(a, b string) int {
	for i := 0; i < min(len(a), len(b)); i++ {
		ca, cb := a[i], b[i]
		switch {
		case ca == cb:
			continue
		case ca == '/':
			return -1
		case cb == '/':
			return 1
		case ca < cb:
			return -1
		default:
			return 1
		}
	}
	return cmp.Compare(len(a), len(b))
}

// isUnder reports whether p lies below dir.
func isUnder(p, dir string) bool {
	return len(p) > len(dir) && p[len(dir)] == '/' && p[:len(dir)] == dir
}
