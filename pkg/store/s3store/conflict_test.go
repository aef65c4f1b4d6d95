package s3store

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/store"
)

// TestCreateBucketConflicts: both of S3's answers for a taken name are
// fault.Conflict, and only BucketAlreadyExists (another account's bucket)
// is store.TakenElsewhere.
func TestCreateBucketConflicts(t *testing.T) {
	for _, tc := range []struct {
		code      string
		elsewhere bool
	}{
		{"BucketAlreadyExists", true},
		{"BucketAlreadyOwnedByYou", false},
	} {
		t.Run(tc.code, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/xml")
				w.WriteHeader(http.StatusConflict)
				_, _ = w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>` + tc.code + `</Code><Message>taken</Message><BucketName>b</BucketName><RequestId>1</RequestId></Error>`))
			}))
			defer srv.Close()
			s, err := Open(Config{Endpoint: srv.URL, PathStyle: true}, store.Secrets{SecretAccessKeyID: "id", SecretSecretAccessKey: "secret"})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			err = s.CreateBucket(context.Background(), "taken-bucket")
			if !errors.Is(err, fault.Conflict) {
				t.Fatalf("CreateBucket = %v, want fault.Conflict", err)
			}
			if got := errors.Is(err, store.TakenElsewhere); got != tc.elsewhere {
				t.Fatalf("CreateBucket = %v: TakenElsewhere %v, want %v", err, got, tc.elsewhere)
			}
		})
	}
}
