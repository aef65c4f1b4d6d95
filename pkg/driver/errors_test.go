package driver

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
)

func TestErrorCode(t *testing.T) {
	tests := []struct {
		err  error
		want codes.Code
	}{
		{fault.Invalid, codes.InvalidArgument},
		{fault.NotFound, codes.NotFound},
		{fault.Denied, codes.PermissionDenied},
		{fault.Conflict, codes.AlreadyExists},
		{fault.Precondition, codes.FailedPrecondition},
		{fault.Busy, codes.Aborted},
		{fault.Pending, codes.Unavailable},
		{fault.Unavailable, codes.Unavailable},
		{fault.Exhausted, codes.ResourceExhausted},
		{context.DeadlineExceeded, codes.DeadlineExceeded},
		{context.Canceled, codes.Canceled},
		{errors.New("boom"), codes.Internal},
	}
	for _, tt := range tests {
		wrapped := fmt.Errorf("outer: %w", fmt.Errorf("%w: detail", tt.err))
		if got := status.Code(toStatus(wrapped)); got != tt.want {
			t.Errorf("code for %v = %v, want %v", tt.err, got, tt.want)
		}
	}
	if toStatus(nil) != nil {
		t.Fatal("nil error became a status")
	}
	already := status.Error(codes.Aborted, "x")
	if got := status.Code(toStatus(already)); got != codes.Aborted {
		t.Fatalf("existing status rewritten to %v", got)
	}
}
