package copier

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	rfs "github.com/rclone/rclone/fs"
	"google.golang.org/api/googleapi"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
)

// Retries of one GET (a whole object or one range) after rclone's own
// low-level retries, and the pause before the first; it doubles each time.
const (
	fetchAttempts = 3
	fetchBackoff  = 250 * time.Millisecond
)

// outageAfter is how many downloads in a row may fail without the store
// answering (network errors, 5xx) before the copy stops as a whole with
// fault.Unavailable instead of leaving out every object.
const outageAfter = 16

// httpStatus is the HTTP status the store answered err with, 404 for
// rclone's "not found" errors, or 0 when no answer is known (a network
// error, a timeout).
func httpStatus(err error) int {
	if errors.Is(err, rfs.ErrorObjectNotFound) || errors.Is(err, rfs.ErrorDirNotFound) || errors.Is(err, rfs.ErrorNotFoundInConfigFile) {
		return http.StatusNotFound
	}
	var aws interface{ HTTPStatusCode() int }
	if errors.As(err, &aws) {
		return aws.HTTPStatusCode()
	}
	var az *azcore.ResponseError
	if errors.As(err, &az) {
		return az.StatusCode
	}
	var gcs *googleapi.Error
	if errors.As(err, &gcs) {
		return gcs.Code
	}
	return 0
}

// storeAnswered reports whether err is the store's own refusal of this one
// request (4xx): retrying it changes nothing, and it says nothing about the
// store being down.
func storeAnswered(err error) bool {
	s := httpStatus(err)
	return s >= 400 && s < 500 && s != http.StatusRequestTimeout && s != http.StatusTooManyRequests
}

// listingError classifies a failed listing of the whole bucket or prefix:
// a missing bucket is final (NotFound), refused credentials are final
// (Denied), anything else is retryable (Unavailable).
func listingError(err error) error {
	switch s := httpStatus(err); {
	case s == http.StatusNotFound:
		return fmt.Errorf("%w: listing the bucket: the bucket does not exist: %v", fault.NotFound, err)
	case s == http.StatusUnauthorized || s == http.StatusForbidden:
		return fmt.Errorf("%w: listing the bucket: the credentials were refused: %v", fault.Denied, err)
	}
	return fmt.Errorf("%w: listing the bucket: %v", fault.Unavailable, err)
}

// localSkip reports whether a local error concerns one file's name or
// place only (the node filesystem refuses that name), so the file is left
// out and the copy goes on.
func localSkip(err error) bool {
	for _, e := range []error{syscall.ENAMETOOLONG, syscall.EILSEQ, syscall.EINVAL, syscall.ENOTDIR, syscall.EISDIR, syscall.EEXIST} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// localFull reports whether a local error means the disk is full.
func localFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// pause waits d unless ctx ends first.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
