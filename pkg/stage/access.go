package stage

import (
	"context"
	"errors"
	"fmt"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/redact"
	"github.com/bucket-csi/bucket-csi/pkg/store"
)

// errEnough stops the access probe's listing after its first object.
var errEnough = errors.New("enough")

// checkAccess lists at most one object under the volume's prefix with the
// volume's own credentials, so that a stage with a missing bucket or
// refused credentials fails at once with the store's reason (fault.NotFound,
// fault.Denied; kubelet shows it in the pod's events) instead of mounting a
// directory whose every access fails later with a bare EIO. A listing under
// the prefix is what a prefix-scoped policy grants, where a HEAD of the
// bucket may be refused. Only those two answers fail the stage; the error
// never holds a secret.
func checkAccess(ctx context.Context, stores store.Registry, req Request) error {
	b, err := stores.Get(req.Handle.Store)
	if err != nil {
		return err
	}
	st, err := b.Open(req.Secrets, req.Handle.Location)
	if err != nil {
		return err
	}
	defer st.Close()
	err = st.List(ctx, req.Handle.Bucket, req.Handle.Prefix, 1, func(store.Object) error { return errEnough })
	// Only the store's definite answers stop the stage: anything else (a
	// store briefly unreachable, an engine that refuses the settings) is
	// left to the FUSE server, which reports it in its own terms, and a
	// MOUNT_CACHED volume can serve its cache while the store is away.
	if err == nil || !(errors.Is(err, fault.NotFound) || errors.Is(err, fault.Denied)) {
		return nil
	}
	return fmt.Errorf("bucket %q (store %s) cannot be listed with the volume's credentials: %w",
		req.Handle.Bucket, req.Handle.Store, redact.FromSecrets(req.Secrets).Error(err))
}
