package volume

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/store"
)

// Location is a parsed bucket URI.
type Location struct {
	Store    string
	Bucket   string
	Location string // Azure account, IBM region or OCI region; else ""
	Prefix   string
}

// ParseSource parses a bucket URI in any form a kind of kinds declares
// (store.Kind.URIForm):
//
//	s3://bucket[/prefix]
//	gs://bucket[/prefix]
//	https://<account>.blob.core.windows.net/<container>[/prefix]
//	r2://bucket[/prefix]
//	cos://<region>/<bucket>[/prefix]
//	oci://<bucket>[@<region>][/prefix]
//	nebius://bucket[/prefix]
//
// A local path is rejected with a pointer to `bucket-csi storage upload`.
func ParseSource(kinds store.Catalog, uri string) (Location, error) {
	if i := strings.IndexAny(uri, "?#"); i >= 0 {
		// A pasted SAS or presigned URL: never echo, store or log the query.
		return Location{}, fmt.Errorf("%w: %s %q... has a query string; bucket URIs take none (put SAS tokens and keys in the volume's Secret)", fault.Invalid, KeySource, uri[:i])
	}
	bad := func(why string) (Location, error) {
		return Location{}, fmt.Errorf("%w: %s %q is not valid: %s", fault.Invalid, KeySource, uri, why)
	}
	scheme, rest, ok := strings.Cut(uri, "://")
	if !ok {
		if strings.HasPrefix(uri, "/") || strings.HasPrefix(uri, "~") || strings.HasPrefix(uri, ".") {
			return bad("a local path cannot be mounted by the node; upload it with `bucket-csi storage upload --name NAME PATH` and set name: NAME")
		}
		return bad("expected a bucket URI such as " + uriForms(kinds))
	}
	kind, ok := kinds.ByScheme(strings.ToLower(scheme))
	if !ok {
		return bad(fmt.Sprintf("unknown scheme %q; accepted: %s", scheme, uriForms(kinds)))
	}
	loc := Location{Store: kind.Name}
	var bucket, prefix string
	if kind.SplitURI != nil {
		var err error
		if bucket, loc.Location, prefix, err = kind.SplitURI(rest); err != nil {
			return bad(err.Error())
		}
	} else {
		bucket, prefix, _ = strings.Cut(rest, "/")
	}
	if bucket == "" {
		return bad("no bucket name")
	}
	if err := kind.ValidateBucket(bucket); err != nil {
		return bad(err.Error())
	}
	p, err := CleanPrefix(prefix)
	if err != nil {
		return bad(err.Error())
	}
	loc.Bucket, loc.Prefix = bucket, p
	return loc, nil
}

// uriForms lists the URI form of every kind, for messages.
func uriForms(kinds store.Catalog) string {
	var forms []string
	for _, name := range kinds.Names() {
		k, _ := kinds.Kind(name)
		forms = append(forms, k.URIForm)
	}
	return strings.Join(forms, ", ")
}

// ValidateBucket checks a bucket name against the naming rules of kind.
func ValidateBucket(kinds store.Catalog, kind, bucket string) error {
	k, ok := kinds.Kind(kind)
	if !ok {
		return fmt.Errorf("%w: unknown store %q", fault.Invalid, kind)
	}
	if err := k.ValidateBucket(bucket); err != nil {
		return fmt.Errorf("%w: %v", fault.Invalid, err)
	}
	return nil
}

// CleanPrefix validates a key prefix and returns it without leading or
// trailing slashes. Segments "." and "..", empty segments, backslashes and
// control characters are refused: a prefix must never name a path outside
// the bucket root once it is mapped onto a filesystem.
func CleanPrefix(p string) (string, error) {
	p = strings.Trim(p, "/")
	if p == "" {
		return "", nil
	}
	if !utf8.ValidString(p) {
		return "", fmt.Errorf("prefix %q is not valid UTF-8", p)
	}
	for _, r := range p {
		if unicode.IsControl(r) || r == '\\' || r == '?' || r == '#' {
			return "", fmt.Errorf("prefix %q contains a control character, backslash, ? or #", p)
		}
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", fmt.Errorf("prefix %q has an empty, \".\" or \"..\" segment", p)
		}
	}
	return p, nil
}
