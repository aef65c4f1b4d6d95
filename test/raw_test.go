package test

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// putRaw writes an object with a plain aws-sdk-go-v2 client and the
// bucket's own credentials, bypassing the driver: what a tenant with write
// access to the bucket can do.
func putRaw(t *testing.T, cl *s3.Client, bucket, key, data string) {
	t.Helper()
	if _, err := cl.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader(data)}); err != nil {
		t.Fatalf("writing s3://%s/%s: %v", bucket, key, err)
	}
}
