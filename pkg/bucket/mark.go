package bucket

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
)

// The mark (OwnerKey) is what makes a bucket the driver's. Anyone who can
// write to a bucket can write that object, so the mark carries an
// HMAC-SHA256 signature, made with a key only the driver (and the admin's
// CLI) holds, over every other field of the mark, including the store,
// location and bucket name it was made for: a mark copied from another
// bucket, an edited mark, a mark signed with another key and an unsigned
// mark of an earlier version all fail verification, and such a bucket is
// foreign (used, never listed as the driver's, never deleted).

// MarkVersion is the only mark version the driver trusts. Version 1 marks
// (unsigned, written before signing existed) are unverified until an admin
// re-marks the bucket (`bucket-csi storage remark`).
const MarkVersion = 2

// MinKeyBytes is the shortest ownership key accepted.
const MinKeyBytes = 32

// maxKeyFileBytes bounds what LoadKey reads.
const maxKeyFileBytes = 4096

// MaxMarkBytes bounds the mark object: a larger one is not a mark.
const MaxMarkBytes = 4096

// StateDeleting is the mark state of a bucket whose purge has started:
// its objects may be partly deleted. Nothing new is placed in such a
// bucket; the purge is finished by the next DeleteVolume or `storage
// delete`.
const StateDeleting = "deleting"

// Ref names one bucket in one store account: the store kind, the
// location (Azure account, region; "" for the store's configured
// default) and the bucket. A mark is valid only for the Ref it was signed
// for.
type Ref struct {
	Store, Location, Bucket string
}

// String formats r for lock keys and messages.
func (r Ref) String() string {
	return r.Store + "/" + r.Location + "/" + r.Bucket
}

// Mark is the content of a version 2 marker object.
type Mark struct {
	Driver    string    `json:"driver"`
	Version   int       `json:"version"`
	Store     string    `json:"store"`
	Location  string    `json:"location"`
	Bucket    string    `json:"bucket"`
	CreatedAt time.Time `json:"createdAt"`
	// CreatedBy says who asked: "pvc <namespace>/<name>", "volume <name>"
	// or "cli <command>".
	CreatedBy string `json:"createdBy"`
	// State is "" for a bucket in use, StateDeleting once a purge started.
	State string `json:"state,omitempty"`
	// Nonce makes every mark unique (base64url of 16 random bytes).
	Nonce string `json:"nonce"`
	// Sig is base64url(HMAC-SHA256(key, canonical(all other fields))).
	Sig string `json:"sig"`
}

// Marker signs and verifies marks with one ownership key. It holds no
// other state and is safe for concurrent use.
type Marker struct {
	key []byte
}

// NewMarker returns a Marker for key, which must be at least MinKeyBytes.
func NewMarker(key []byte) (*Marker, error) {
	if len(key) < MinKeyBytes {
		return nil, fmt.Errorf("%w: the ownership key has %d bytes, at least %d are required", fault.Invalid, len(key), MinKeyBytes)
	}
	return &Marker{key: bytes.Clone(key)}, nil
}

// LoadKey reads an ownership key file: its content, without trailing
// white space, is the key (e.g. 32 random bytes, or 64 random
// characters). The file must not be readable or writable by others than
// its owner and group.
func LoadKey(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o007 != 0 {
		return nil, fmt.Errorf("%w: ownership key file %s is accessible to others (mode %v); chmod o-rwx it", fault.Invalid, path, st.Mode().Perm())
	}
	if st.Size() > maxKeyFileBytes {
		return nil, fmt.Errorf("%w: ownership key file %s is larger than %d bytes", fault.Invalid, path, maxKeyFileBytes)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key := bytes.TrimRight(data, " \t\r\n")
	if len(key) < MinKeyBytes {
		return nil, fmt.Errorf("%w: ownership key file %s holds %d bytes, at least %d are required", fault.Invalid, path, len(key), MinKeyBytes)
	}
	return key, nil
}

// NewKey returns a new random key, for tests and local setups.
func NewKey() []byte {
	k := make([]byte, MinKeyBytes)
	_, _ = rand.Read(k)
	return []byte(base64.RawURLEncoding.EncodeToString(k))
}

// canonical is the byte string the signature covers: a domain label, then
// every field but Sig, each as "<length>:<value>\n", in a fixed order, so
// no two different marks share an encoding.
func canonical(m *Mark) []byte {
	var b strings.Builder
	b.WriteString("bucket-csi owner mark\n")
	for _, f := range []string{
		m.Driver, strconv.Itoa(m.Version), m.Store, m.Location, m.Bucket,
		m.CreatedAt.UTC().Format(time.RFC3339Nano), m.CreatedBy, m.State, m.Nonce,
	} {
		b.WriteString(strconv.Itoa(len(f)))
		b.WriteByte(':')
		b.WriteString(f)
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

func (k *Marker) mac(m *Mark) []byte {
	h := hmac.New(sha256.New, k.key)
	h.Write(canonical(m))
	return h.Sum(nil)
}

// Sign fills in the driver, version, ref and (when empty) nonce and
// creation time of m, signs it, and returns the marker object's content.
func (k *Marker) Sign(ref Ref, m Mark) []byte {
	m.Driver, m.Version = DriverMark, MarkVersion
	m.Store, m.Location, m.Bucket = ref.Store, ref.Location, ref.Bucket
	if m.CreatedAt.IsZero() {
		m.CreatedAt = time.Now().UTC()
	}
	m.CreatedAt = m.CreatedAt.UTC()
	if m.Nonce == "" {
		n := make([]byte, 16)
		_, _ = rand.Read(n)
		m.Nonce = base64.RawURLEncoding.EncodeToString(n)
	}
	m.Sig = base64.RawURLEncoding.EncodeToString(k.mac(&m))
	data, _ := json.Marshal(m)
	return data
}

// ErrUnverified is the error of Verify for anything that is not a genuine
// mark for the bucket: malformed, too large, another version, another
// bucket, or a wrong signature.
var ErrUnverified = errors.New("not a genuine bucket-csi mark")

// Verify parses data strictly and returns the mark when it is a version 2
// mark signed with this key for ref; anything else returns an error
// wrapping ErrUnverified and saying why.
func (k *Marker) Verify(ref Ref, data []byte) (*Mark, error) {
	m, err := ParseMark(data)
	if err != nil {
		return nil, err
	}
	// Compared as text with the one encoding Sign writes: base64 decoding
	// alone would also take other spellings of the same bytes (non-zero
	// trailing bits, line breaks), and a verified mark's Sig must be what
	// this key signs (FuzzVerifyMark).
	if !hmac.Equal([]byte(m.Sig), []byte(base64.RawURLEncoding.EncodeToString(k.mac(m)))) {
		return nil, fmt.Errorf("%w: the signature does not match (another key, or an edited mark)", ErrUnverified)
	}
	if m.Store != ref.Store || m.Location != ref.Location || m.Bucket != ref.Bucket {
		return nil, fmt.Errorf("%w: signed for bucket %s, not %s", ErrUnverified, Ref{m.Store, m.Location, m.Bucket}, ref)
	}
	return m, nil
}

// ParseMark decodes a version 2 mark without checking its signature:
// unknown fields, a trailing value, a size over MaxMarkBytes, another
// driver or version, an unknown state or a missing nonce or signature are
// refused (ErrUnverified).
func ParseMark(data []byte) (*Mark, error) {
	if len(data) > MaxMarkBytes {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrUnverified, len(data), MaxMarkBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m Mark
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnverified, err)
	}
	if len(bytes.TrimSpace(data[dec.InputOffset():])) > 0 {
		return nil, fmt.Errorf("%w: data after the mark", ErrUnverified)
	}
	switch {
	case m.Driver != DriverMark:
		return nil, fmt.Errorf("%w: driver %q", ErrUnverified, m.Driver)
	case m.Version == 0:
		return nil, fmt.Errorf("%w: an unsigned mark of an earlier version (re-mark with `bucket-csi storage remark`)", ErrUnverified)
	case m.Version != MarkVersion:
		return nil, fmt.Errorf("%w: unknown version %d", ErrUnverified, m.Version)
	case m.State != "" && m.State != StateDeleting:
		return nil, fmt.Errorf("%w: unknown state %q", ErrUnverified, m.State)
	case m.Nonce == "" || m.Sig == "":
		return nil, fmt.Errorf("%w: no nonce or signature", ErrUnverified)
	}
	return &m, nil
}
