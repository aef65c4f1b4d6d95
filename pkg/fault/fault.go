// Package fault defines the small set of error kinds that every layer of the
// driver wraps its errors in. Lower layers say what went wrong in their own
// terms (a missing bucket, a bad attribute); the gRPC edge maps each kind to
// exactly one CSI status code in one place (driver.errorCode), so no layer
// above the edge ever matches error strings.
package fault

import "errors"

// Kinds. Wrap them with fmt.Errorf("%w: ...", fault.X) and test with errors.Is.
var (
	// Invalid: the request can never succeed as written (bad attribute,
	// malformed URI, bucket name breaking the store's rules).
	Invalid = errors.New("invalid argument")
	// NotFound: the bucket, volume or path does not exist.
	NotFound = errors.New("not found")
	// Denied: the credentials are not allowed to do this.
	Denied = errors.New("permission denied")
	// Conflict: the name is taken by something incompatible.
	Conflict = errors.New("already exists")
	// Precondition: the system is not in a state where the call can succeed,
	// and retrying unchanged will not help until someone acts.
	Precondition = errors.New("failed precondition")
	// Busy: another call on the same volume is in progress; retry later.
	Busy = errors.New("operation in progress")
	// Pending: work is still running (uploads, a background copy); the same
	// call succeeds once it has finished. Retryable.
	Pending = errors.New("pending")
	// Unavailable: a dependency (the store, the FUSE server) could not be
	// reached; retryable.
	Unavailable = errors.New("unavailable")
	// Exhausted: not enough disk, quota or similar resource.
	Exhausted = errors.New("resource exhausted")
)
