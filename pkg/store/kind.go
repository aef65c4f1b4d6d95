package store

import (
	"errors"
	"flag"
	"maps"
	"regexp"
	"slices"
)

// Kind is the one descriptor a store package declares: everything the rest
// of the code needs to know about a store kind. pkg/stores lists every Kind
// of this build; the volume parser, the driver's flags and the registry of
// configured backends all read from that list, so adding a store is one
// package plus one line there.
//
// The package that declares a Kind also registers the matching rclone
// backend (a blank import), so every binary that can name the kind can
// mount, copy and upload it.
type Kind struct {
	// Name is the kind users write in `store:` ("s3", "gcs", "r2", ...).
	Name string
	// Schemes are the URI schemes of the kind's bucket URIs, lower case,
	// without "://" ("s3", "gs"). Each scheme belongs to one kind.
	Schemes []string
	// URIForm shows the URI form in messages ("s3://bucket[/prefix]").
	URIForm string
	// SplitURI splits what follows "<scheme>://" into the bucket, its
	// location and the rest (the raw prefix). nil means
	// "<bucket>[/<prefix>]" with no location. The error says why the URI is
	// not valid; the caller wraps it with the URI and fault.Invalid.
	SplitURI func(rest string) (bucket, location, prefix string, err error)
	// ValidateBucket checks a bucket name against the kind's naming rule;
	// the error names the bucket and the rule.
	ValidateBucket func(bucket string) error
	// Flags registers the kind's driver flags on fs and returns what builds
	// the kind's Backend once fs is parsed.
	Flags func(fs *flag.FlagSet) Setup
}

// Setup builds a kind's Backend from its parsed flags. getenv reads the
// process environment (static keys a store may take from it). An error
// wrapping ErrNotConfigured means the flags leave the kind unusable: it is
// not served by default, and naming it in --stores fails with that error.
type Setup func(getenv func(string) string) (Backend, error)

// ErrNotConfigured marks a kind whose flags are missing a required value.
var ErrNotConfigured = errors.New("not configured")

// Catalog is the read-only set of store kinds a build knows, by name and by
// URI scheme. The zero Catalog knows no kind.
type Catalog struct {
	byName   map[string]Kind
	byScheme map[string]Kind
}

// NewCatalog returns the catalog of kinds. A name or scheme declared twice
// is a programming error and panics.
func NewCatalog(kinds ...Kind) Catalog {
	c := Catalog{byName: map[string]Kind{}, byScheme: map[string]Kind{}}
	for _, k := range kinds {
		if _, dup := c.byName[k.Name]; dup || k.Name == "" || k.ValidateBucket == nil {
			panic("store: kind " + k.Name + " declared twice or incomplete")
		}
		c.byName[k.Name] = k
		for _, s := range k.Schemes {
			if _, dup := c.byScheme[s]; dup {
				panic("store: scheme " + s + " declared twice")
			}
			c.byScheme[s] = k
		}
	}
	return c
}

// Kind returns the kind called name.
func (c Catalog) Kind(name string) (Kind, bool) {
	k, ok := c.byName[name]
	return k, ok
}

// ByScheme returns the kind whose URIs use scheme (lower case).
func (c Catalog) ByScheme(scheme string) (Kind, bool) {
	k, ok := c.byScheme[scheme]
	return k, ok
}

// Names lists the kinds, sorted.
func (c Catalog) Names() []string { return slices.Sorted(maps.Keys(c.byName)) }

var (
	regionRE  = regexp.MustCompile(`^[a-z]{2,}(-[a-z0-9]+)+$|^[a-z]{2,}[0-9]?$`)
	accountRE = regexp.MustCompile(`^[a-z0-9]{3,24}$`)
)

// IsRegion reports whether s has the form of a cloud region name
// ("us-east", "eu-frankfurt-1").
func IsRegion(s string) bool { return regionRE.MatchString(s) }

// IsAccountName reports whether s has the form of a storage account name:
// 3-24 lowercase letters and digits (Azure's rule).
func IsAccountName(s string) bool { return accountRE.MatchString(s) }

// IsLocation reports whether s has the form of any location a kind records
// (a region or an account name).
func IsLocation(s string) bool { return IsRegion(s) || IsAccountName(s) }
