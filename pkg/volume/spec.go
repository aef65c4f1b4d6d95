// Package volume turns the string attributes a user writes (StorageClass
// parameters, PV volumeAttributes, inline volumeAttributes) into one typed,
// validated Spec, and encodes and decodes the volume IDs that carry a Spec
// from the controller to the node.
//
// Every rejection wraps fault.Invalid and names the offending key and the
// accepted values, so the gRPC edge answers InvalidArgument with a message a
// user can act on.
package volume

import (
	"fmt"
	"strings"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
	storepkg "github.com/bucket-csi/bucket-csi/pkg/store"
)

// Mode is how a bucket is made available on a node.
type Mode string

// The three modes of the spec.
const (
	ModeMount       Mode = "MOUNT"
	ModeCopy        Mode = "COPY"
	ModeMountCached Mode = "MOUNT_CACHED"
)

// Modes lists the accepted modes in the order documentation shows them.
func Modes() []Mode { return []Mode{ModeMount, ModeCopy, ModeMountCached} }

// Attribute keys a user may set.
const (
	KeySource     = "source"
	KeyName       = "name"
	KeyStore      = "store"
	KeyMode       = "mode"
	KeyPersistent = "persistent"
)

// Keys that Kubernetes itself adds to parameters or volume context. They are
// accepted and ignored by Parse; the driver reads the ones it needs directly.
const (
	KeyPVName        = "csi.storage.k8s.io/pv/name"
	KeyPVCName       = "csi.storage.k8s.io/pvc/name"
	KeyPVCNamespace  = "csi.storage.k8s.io/pvc/namespace"
	KeyEphemeral     = "csi.storage.k8s.io/ephemeral"
	KeyPodNamespace  = "csi.storage.k8s.io/pod.namespace"
	KeyPodName       = "csi.storage.k8s.io/pod.name"
	KeyPodUID        = "csi.storage.k8s.io/pod.uid"
	kubernetesPrefix = "csi.storage.k8s.io/"
	provisionerID    = "storage.kubernetes.io/csiProvisionerIdentity"
)

var userKeys = []string{KeyMode, KeyName, KeyPersistent, KeyProfile, KeySource, KeyStore}

// Spec is the validated form of a volume's attributes.
type Spec struct {
	// Store is the object store kind ("s3", "gcs", ...).
	Store string
	// Bucket is the bucket (container) name, valid for Store.
	Bucket string
	// Location qualifies Bucket where the store needs it (the Azure
	// account, the IBM or OCI region); empty otherwise.
	Location string
	// Prefix is an optional key prefix inside the bucket, without leading or
	// trailing slashes.
	Prefix string
	// Mode is how the node attaches the bucket.
	Mode Mode
	// Persistent is false when the bucket should be deleted with the volume
	// (only ever honoured for buckets the driver created).
	Persistent bool
	// Existing is true when the user pointed at a bucket with `source`: the
	// driver never creates or deletes it.
	Existing bool
	// Profile is the workload profile (`profile`), "" for none. It is not
	// part of the volume ID: CreateVolume hands it to the node in the
	// volume context.
	Profile Profile
}

// Defaults are the driver-wide values used where attributes are silent.
type Defaults struct {
	// Store is used when neither `store` nor a source URI names one.
	Store string
	// Stores lists the stores this driver instance can serve; empty means
	// every store the parser knows.
	Stores []string
	// Kinds is every store kind the parser knows (pkg/stores.Catalog):
	// URI schemes and naming rules.
	Kinds storepkg.Catalog
}

// Parse validates attrs and returns the Spec they describe. derivedName is the
// bucket name to use when attrs name no bucket at all (dynamic provisioning
// without `name` or `source`); pass "" where a bucket must be named (static PVs,
// inline volumes).
func Parse(attrs map[string]string, def Defaults, derivedName string) (Spec, error) {
	for k := range attrs {
		if !isKnownKey(k) {
			// The value is not echoed: it may be a secret put in the wrong place.
			return Spec{}, fmt.Errorf("%w: key %q is not a volume attribute: accepted: one of %s (or a csi.storage.k8s.io/ key set by Kubernetes)", fault.Invalid, k, strings.Join(userKeys, ", "))
		}
	}
	spec := Spec{Mode: ModeMount, Persistent: true}
	if v, ok := attrs[KeyMode]; ok {
		m, err := parseMode(v)
		if err != nil {
			return Spec{}, err
		}
		spec.Mode = m
	}
	p, err := ParseProfile(attrs[KeyProfile])
	if err != nil {
		return Spec{}, err
	}
	spec.Profile = p
	if v, ok := attrs[KeyPersistent]; ok {
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "true", "yes", "1":
			spec.Persistent = true
		case "false", "no", "0":
			spec.Persistent = false
		default:
			return Spec{}, invalid(KeyPersistent, v, `"true" or "false"`)
		}
	}
	store := strings.TrimSpace(attrs[KeyStore])
	if store != "" {
		if _, ok := def.Kinds.Kind(store); !ok {
			return Spec{}, invalid(KeyStore, store, "one of "+strings.Join(def.Kinds.Names(), ", "))
		}
	}
	source, name := strings.TrimSpace(attrs[KeySource]), strings.TrimSpace(attrs[KeyName])
	switch {
	case source != "" && name != "":
		// The spec's "upload local files" case: a pod cannot reach a local
		// path, so the CLI uploads and PVs name the bucket.
		return Spec{}, fmt.Errorf("%w: %q and %q are both set: a volume either mounts an existing bucket (source: a bucket URI) or creates one (name); to upload local files use `bucket-csi storage upload` and then name the bucket", fault.Invalid, KeySource, KeyName)
	case source != "":
		loc, err := ParseSource(def.Kinds, source)
		if err != nil {
			return Spec{}, err
		}
		if store != "" && store != loc.Store {
			return Spec{}, fmt.Errorf("%w: %q is %q but %q %q is a %s URI; drop %q or make them agree", fault.Invalid, KeyStore, store, KeySource, source, loc.Store, KeyStore)
		}
		spec.Store, spec.Bucket, spec.Location, spec.Prefix = loc.Store, loc.Bucket, loc.Location, loc.Prefix
		spec.Existing = true
	default:
		if store == "" {
			store = def.Store
		}
		if store == "" {
			return Spec{}, fmt.Errorf("%w: %q is not set and the driver has no default store; set it to one of %s", fault.Invalid, KeyStore, strings.Join(def.Kinds.Names(), ", "))
		}
		bucket := name
		key := KeyName
		if bucket == "" {
			bucket, key = derivedName, "generated name"
		}
		if bucket == "" {
			return Spec{}, fmt.Errorf("%w: neither %q (an existing bucket URI) nor %q (a bucket to create) is set", fault.Invalid, KeySource, KeyName)
		}
		kind, ok := def.Kinds.Kind(store)
		if !ok {
			return Spec{}, invalid(KeyStore, store, "one of "+strings.Join(def.Kinds.Names(), ", "))
		}
		if err := kind.ValidateBucket(bucket); err != nil {
			return Spec{}, invalid(key, bucket, err.Error())
		}
		spec.Store, spec.Bucket = store, bucket
	}
	if len(def.Stores) > 0 && !contains(def.Stores, spec.Store) {
		return Spec{}, fmt.Errorf("%w: store %q is not configured on this driver; configured: %s", fault.Invalid, spec.Store, strings.Join(def.Stores, ", "))
	}
	if spec.Existing && !spec.Persistent {
		return Spec{}, fmt.Errorf("%w: %q is \"false\" but %q names an existing bucket, which the driver never deletes; remove %q", fault.Invalid, KeyPersistent, KeySource, KeyPersistent)
	}
	return spec, nil
}

// ParseModes parses a comma-separated list of modes (a driver flag);
// fault.Invalid names the accepted ones.
func ParseModes(list string) ([]Mode, error) {
	var out []Mode
	for _, v := range strings.Split(list, ",") {
		if strings.TrimSpace(v) == "" {
			continue
		}
		m, err := parseMode(v)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

func parseMode(v string) (Mode, error) {
	m := Mode(strings.ToUpper(strings.TrimSpace(v)))
	for _, ok := range Modes() {
		if m == ok {
			return m, nil
		}
	}
	names := make([]string, len(Modes()))
	for i, ok := range Modes() {
		names[i] = string(ok)
	}
	return "", invalid(KeyMode, v, strings.Join(names, ", "))
}

func isKnownKey(k string) bool {
	return contains(userKeys, k) || strings.HasPrefix(k, kubernetesPrefix) || k == provisionerID
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// invalid builds the one error shape users see for a bad attribute.
func invalid(key, value, accepted string) error {
	return fmt.Errorf("%w: %s %q is not valid: accepted: %s", fault.Invalid, key, value, accepted)
}
