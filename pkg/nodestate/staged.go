package nodestate

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// Staged is what a volume was staged with (besides its mode, which is
// Volume.Mode), so that a repeated stage can be told from an incompatible
// one. It holds no secret: the secrets are kept as a keyed hash.
type Staged struct {
	// Source is the bucket the stage serves: store, bucket, location and
	// prefix (a static PV's admin-chosen handle does not pin them).
	Source string `json:"source"`
	// Flags are the mount options as parsed from the volume capability
	// (mount flags and a read-only access mode).
	Flags volume.MountFlags `json:"flags"`
	// SecretsMAC is SecretsMAC of the stage's secrets.
	SecretsMAC string `json:"secretsMAC"`
}

// Diff names what differs between s (staged) and o (asked), in words fit
// for an error message: the source and flags with both values, the secrets
// only as "the secrets differ".
func (s Staged) Diff(o Staged) []string {
	var out []string
	if s.Source != o.Source {
		out = append(out, fmt.Sprintf("bucket %s is staged, %s asked", s.Source, o.Source))
	}
	if s.Flags != o.Flags {
		out = append(out, fmt.Sprintf("mount options %q are staged, %q asked", s.Flags.String(), o.Flags.String()))
	}
	if s.SecretsMAC != o.SecretsMAC {
		out = append(out, "the secrets differ")
	}
	return out
}

// keyFile holds the node's random key for SecretsMAC (0600, in the 0700
// state root). Losing it only makes the next repeat of every live stage look
// like one with other secrets.
const (
	keyFile = "secrets.key"
	keySize = 32
)

// SecretsMAC returns HMAC-SHA256 of secrets under the node's key, in hex:
// equal secrets give equal values on one node, and without the key a
// record does not help guess a weak secret. The key is created on first
// use.
func (d Dir) SecretsMAC(secrets map[string]string) (string, error) {
	key, err := d.key()
	if err != nil {
		return "", err
	}
	mac := hmac.New(sha256.New, key)
	names := make([]string, 0, len(secrets))
	for k := range secrets {
		names = append(names, k)
	}
	slices.Sort(names)
	var n [binary.MaxVarintLen64]byte
	for _, k := range names {
		// Length-prefixed, so no two maps encode alike.
		for _, s := range []string{k, secrets[k]} {
			mac.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
			mac.Write([]byte(s))
		}
	}
	return hex.EncodeToString(mac.Sum(nil)), nil
}

// key reads the node's key, creating it atomically (write a temporary file,
// hard-link it into place) so concurrent first uses agree on one key.
func (d Dir) key() ([]byte, error) {
	path := filepath.Join(d.Root, keyFile)
	key, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if err := d.createKey(path); err != nil {
			return nil, fmt.Errorf("creating the node's secrets key: %w", err)
		}
		key, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the node's secrets key: %w", err)
	}
	if len(key) != keySize {
		return nil, fmt.Errorf("the node's secrets key %s is corrupt (%d bytes, want %d)", path, len(key), keySize)
	}
	return key, nil
}

func (d Dir) createKey(path string) error {
	if err := os.MkdirAll(d.Root, 0o700); err != nil {
		return err
	}
	key := make([]byte, keySize)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	tmp, err := writeTemp(d.Root, ".key-*", key)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return nil
}
