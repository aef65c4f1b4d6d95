package volume

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
	storepkg "github.com/bucket-csi/bucket-csi/pkg/store"
)

// MaxIDLength is the CSI limit on volume IDs the driver promises to respect.
const MaxIDLength = 128

// Handle is everything a node needs to attach a volume, as carried in the
// volume ID: the Spec plus the hash of the CSI volume name, which makes
// every provisioned volume's ID its own (two PVCs of one `source`
// StorageClass never share a handle, so never share a node stage) and keys
// the volume's record inside a bucket the driver manages.
type Handle struct {
	Spec
	// NameHash is NameHash(csi volume name) for every volume CreateVolume
	// issues. It is "" only in IDs issued before source volumes carried it
	// ("-" in the ID), which stay valid.
	NameHash string
}

// ID layout (version 1), fields separated by ':':
//
//	v1:<store>:<mode><p|e><n|s>:<namehash|->:<bucket>[@<location>][/<prefix>]
//
// mode is M (MOUNT), C (COPY) or K (MOUNT_CACHED); p/e is persistent or
// ephemeral; n/s is a named (driver-managed) or source (existing) bucket.
// The name hash is "-" only in source IDs issued by earlier versions; a
// named volume always has one. The bucket field is last so the prefix may
// contain any character CleanPrefix allows. The encoding is deterministic:
// one Handle, one ID.
const idVersion = "v1"

var (
	modeLetter = map[Mode]byte{ModeMount: 'M', ModeCopy: 'C', ModeMountCached: 'K'}
	letterMode = map[byte]Mode{'M': ModeMount, 'C': ModeCopy, 'K': ModeMountCached}
	hashRE     = regexp.MustCompile(`^[0-9a-f]{12}$`)
)

// NameHash returns the short, stable hash of a CSI volume name used in IDs
// and record keys (48 bits: collisions need about 16 million volumes sharing
// one bucket).
func NameHash(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:6])
}

// DirName returns the name of a volume's node-local directories (its state
// record, copy and cache): the hex of the first 12 bytes of
// sha256(volumeID). It is stable for an ID and free of the ID's
// characters; every directory keyed by a volume uses it.
func DirName(volumeID string) string {
	sum := sha256.Sum256([]byte(volumeID))
	return hex.EncodeToString(sum[:12])
}

// ID encodes h. It fails (fault.Invalid) when the result would exceed
// MaxIDLength, which only a long prefix can cause.
func (h Handle) ID() (string, error) {
	flags := []byte{modeLetter[h.Mode], 'p', 'n'}
	if !h.Persistent {
		flags[1] = 'e'
	}
	if h.Existing {
		flags[2] = 's'
	}
	nh := h.NameHash
	if nh == "" {
		nh = "-"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%s:%s:%s:%s", idVersion, h.Store, flags, nh, h.Bucket)
	if h.Location != "" {
		b.WriteString("@" + h.Location)
	}
	if h.Prefix != "" {
		b.WriteString("/" + h.Prefix)
	}
	id := b.String()
	if len(id) > MaxIDLength {
		return "", fmt.Errorf("%w: the volume ID for bucket %q with prefix %q would be %d bytes, over the CSI limit of %d; use a shorter prefix", fault.Invalid, h.Bucket, h.Prefix, len(id), MaxIDLength)
	}
	return id, nil
}

// ParseID decodes and validates a volume ID made by Handle.ID. Anything else
// (wrong version, bad characters, a bucket or prefix the parser would refuse)
// is fault.NotFound: no volume of this driver has that ID.
func ParseID(kinds storepkg.Catalog, id string) (Handle, error) {
	bad := func(why string) (Handle, error) {
		return Handle{}, fmt.Errorf("%w: volume ID %q is not one this driver issued: %s", fault.NotFound, truncate(id, MaxIDLength), why)
	}
	if len(id) == 0 || len(id) > MaxIDLength {
		return bad(fmt.Sprintf("length %d is outside 1-%d", len(id), MaxIDLength))
	}
	parts := strings.SplitN(id, ":", 5)
	if len(parts) != 5 || parts[0] != idVersion {
		return bad("expected " + idVersion + ":<store>:<flags>:<hash>:<bucket>")
	}
	store, flags, nh, rest := parts[1], parts[2], parts[3], parts[4]
	kind, ok := kinds.Kind(store)
	if !ok {
		return bad("unknown store " + store)
	}
	if len(flags) != 3 {
		return bad("bad flags")
	}
	h := Handle{Spec: Spec{Store: store}}
	if h.Mode, ok = letterMode[flags[0]]; !ok {
		return bad("bad mode flag")
	}
	switch flags[1] {
	case 'p':
		h.Persistent = true
	case 'e':
	default:
		return bad("bad persistence flag")
	}
	switch flags[2] {
	case 's':
		h.Existing = true
	case 'n':
	default:
		return bad("bad origin flag")
	}
	switch {
	case nh == "-" && h.Existing: // a source volume from before name hashes
	case hashRE.MatchString(nh):
		h.NameHash = nh
	default:
		return bad("bad name hash")
	}
	bucketPart, prefix, _ := strings.Cut(rest, "/")
	bucket, location, hasLoc := strings.Cut(bucketPart, "@")
	if hasLoc && (location == "" || !storepkg.IsLocation(location)) {
		return bad("bad location")
	}
	if err := kind.ValidateBucket(bucket); err != nil {
		return bad(err.Error())
	}
	p, err := CleanPrefix(prefix)
	if err != nil || p != prefix {
		return bad("bad prefix")
	}
	h.Bucket, h.Location, h.Prefix = bucket, location, p
	if again, err := h.ID(); err != nil || again != id {
		return bad("not in canonical form")
	}
	return h, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
