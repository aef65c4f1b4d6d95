package volume

import (
	"fmt"
	"net"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
)

// Location is a parsed bucket URI.
type Location struct {
	Store    string
	Bucket   string
	Location string // Azure account, IBM region or OCI region; else ""
	Prefix   string
}

// storeRules describes one store kind: its URI scheme and bucket naming rules.
type storeRules struct {
	scheme   string // "s3://" etc.; Azure uses an https host form instead
	validate func(bucket string) error
}

var stores = map[string]storeRules{
	"s3":    {scheme: "s3://", validate: validateS3},
	"gcs":   {scheme: "gs://", validate: validateGCS},
	"azure": {scheme: "https://", validate: validateAzure},
	"r2":    {scheme: "r2://", validate: validateR2},
	"ibm":   {scheme: "cos://", validate: validateS3},
	"oci":   {scheme: "oci://", validate: validateOCI},
	// Nebius Object Storage, an S3-compatible profile.
	"nebius": {scheme: "nebius://", validate: validateS3},
}

const azureHostSuffix = ".blob.core.windows.net"

// ParseSource parses a bucket URI in any form the spec names:
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
func ParseSource(uri string) (Location, error) {
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
		return bad("expected a bucket URI such as s3://bucket/prefix, gs://, r2://, cos://<region>/<bucket>, oci://<bucket>@<region> or https://<account>.blob.core.windows.net/<container>")
	}
	var loc Location
	switch strings.ToLower(scheme) {
	case "s3":
		loc.Store = "s3"
	case "gs":
		loc.Store = "gcs"
	case "r2":
		loc.Store = "r2"
	case "cos":
		loc.Store = "ibm"
		region, after, _ := strings.Cut(rest, "/")
		if !regionRE.MatchString(region) {
			return bad("cos:// URIs are cos://<region>/<bucket>[/prefix]; region " + fmt.Sprintf("%q", region) + " is not a region name")
		}
		loc.Location, rest = region, after
	case "oci":
		loc.Store = "oci"
	case "nebius":
		loc.Store = "nebius"
	case "https":
		host, after, _ := strings.Cut(rest, "/")
		account, isAzure := strings.CutSuffix(strings.ToLower(host), azureHostSuffix)
		if !isAzure {
			return bad("the only https:// form accepted is https://<account>.blob.core.windows.net/<container>[/prefix]")
		}
		if !azureAccountRE.MatchString(account) {
			return bad(fmt.Sprintf("Azure storage account %q must be 3-24 lowercase letters and digits", account))
		}
		loc.Store, loc.Location, rest = "azure", account, after
	default:
		return bad(fmt.Sprintf("unknown scheme %q; accepted: s3://, gs://, r2://, cos://, oci://, nebius://, https://<account>.blob.core.windows.net/", scheme))
	}
	bucket, prefix, _ := strings.Cut(rest, "/")
	if loc.Store == "oci" {
		if b, region, ok := strings.Cut(bucket, "@"); ok {
			if !regionRE.MatchString(region) {
				return bad(fmt.Sprintf("region %q after @ is not a region name", region))
			}
			bucket, loc.Location = b, region
		}
	}
	if bucket == "" {
		return bad("no bucket name")
	}
	if err := stores[loc.Store].validate(bucket); err != nil {
		return bad(err.Error())
	}
	p, err := CleanPrefix(prefix)
	if err != nil {
		return bad(err.Error())
	}
	loc.Bucket, loc.Prefix = bucket, p
	return loc, nil
}

var (
	regionRE       = regexp.MustCompile(`^[a-z]{2,}(-[a-z0-9]+)+$|^[a-z]{2,}[0-9]?$`)
	azureAccountRE = regexp.MustCompile(`^[a-z0-9]{3,24}$`)
	s3NameRE       = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
	gcsNameRE      = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$`)
	r2NameRE       = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$`)
	azureContRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$`)
	ociNameRE      = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,256}$`)
)

func validateS3(b string) error {
	switch {
	case !s3NameRE.MatchString(b):
		return fmt.Errorf("bucket %q must be 3-63 characters of lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit", b)
	case strings.Contains(b, ".."):
		return fmt.Errorf("bucket %q must not contain two dots in a row", b)
	case net.ParseIP(b) != nil:
		return fmt.Errorf("bucket %q must not be formatted as an IP address", b)
	case strings.HasPrefix(b, "xn--") || strings.HasPrefix(b, "sthree-"):
		return fmt.Errorf("bucket %q must not start with xn-- or sthree-", b)
	case strings.HasSuffix(b, "-s3alias") || strings.HasSuffix(b, "--ol-s3"):
		return fmt.Errorf("bucket %q must not end with -s3alias or --ol-s3", b)
	}
	return nil
}

func validateGCS(b string) error {
	if !gcsNameRE.MatchString(b) {
		return fmt.Errorf("bucket %q must be 3-222 characters of lowercase letters, digits, dots, hyphens and underscores, starting and ending with a letter or digit", b)
	}
	for _, part := range strings.Split(b, ".") {
		if len(part) == 0 || len(part) > 63 {
			return fmt.Errorf("bucket %q: each dot-separated part must be 1-63 characters", b)
		}
	}
	if len(b) > 63 && !strings.Contains(b, ".") {
		return fmt.Errorf("bucket %q: names over 63 characters must contain dots", b)
	}
	if net.ParseIP(b) != nil || strings.HasPrefix(b, "goog") || strings.Contains(b, "google") {
		return fmt.Errorf("bucket %q must not be an IP address, start with goog or contain google", b)
	}
	return nil
}

func validateR2(b string) error {
	if !r2NameRE.MatchString(b) {
		return fmt.Errorf("bucket %q must be 3-63 characters of lowercase letters, digits and hyphens, starting and ending with a letter or digit", b)
	}
	return nil
}

func validateAzure(b string) error {
	if !azureContRE.MatchString(b) || strings.Contains(b, "--") {
		return fmt.Errorf("container %q must be 3-63 characters of lowercase letters, digits and single hyphens, starting and ending with a letter or digit", b)
	}
	return nil
}

func validateOCI(b string) error {
	if !ociNameRE.MatchString(b) {
		return fmt.Errorf("bucket %q must be 1-256 characters of letters, digits, dots, hyphens and underscores", b)
	}
	return nil
}

// ValidateBucket checks a bucket name against store's naming rules.
func ValidateBucket(store, bucket string) error {
	r, ok := stores[store]
	if !ok {
		return fmt.Errorf("%w: unknown store %q", fault.Invalid, store)
	}
	if err := r.validate(bucket); err != nil {
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
