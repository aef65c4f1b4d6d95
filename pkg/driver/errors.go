package driver

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
)

// errorCode is the one place where error kinds become CSI status codes.
// Busy, Pending and Unavailable map to codes kubelet and the
// external-provisioner retry (Aborted, Unavailable), as do Exhausted
// (ResourceExhausted, retried by kubelet) and context errors
// (DeadlineExceeded, Canceled); Invalid, NotFound, Denied, Conflict and
// Precondition say a retry as is will not do, though the
// external-provisioner retries a failed DeleteVolume whatever its code
// (DeleteVolume answers Precondition while a PersistentVolume still uses
// the bucket, and the retry succeeds once it is gone).
func errorCode(err error) codes.Code {
	switch {
	case errors.Is(err, fault.Invalid):
		return codes.InvalidArgument
	case errors.Is(err, fault.NotFound):
		return codes.NotFound
	case errors.Is(err, fault.Denied):
		return codes.PermissionDenied
	case errors.Is(err, fault.Conflict):
		return codes.AlreadyExists
	case errors.Is(err, fault.Precondition):
		return codes.FailedPrecondition
	case errors.Is(err, fault.Busy):
		return codes.Aborted
	case errors.Is(err, fault.Pending), errors.Is(err, fault.Unavailable):
		return codes.Unavailable
	case errors.Is(err, fault.Exhausted):
		return codes.ResourceExhausted
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	}
	return codes.Internal
}

// finalForKubelet reports whether kubelet takes err's code as final:
// nothing in progress and nothing mounted, so it sends no unpublish for
// the call, even once the pod is gone (it retries the publish either way
// while the pod exists). The other codes (isFinalError in kubelet's CSI
// client) leave the mount uncertain, and kubelet unpublishes it when the
// pod is deleted.
func finalForKubelet(err error) bool {
	switch status.Code(toStatus(err)) {
	case codes.Canceled, codes.DeadlineExceeded, codes.Unavailable, codes.ResourceExhausted, codes.Aborted:
		return false
	}
	return true
}

// toStatus converts any error returned by a handler into a gRPC status.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(errorCode(err), err.Error())
}

// required is the InvalidArgument for a missing request field.
func required(field string) error {
	return status.Errorf(codes.InvalidArgument, "%s is required", field)
}
