package testenv

import (
	"context"
	"io"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Client returns a plain aws-sdk-go-v2 client of the server, independent
// of the driver's store code, for checking what really is in a bucket.
func (s *S3) Client() *s3.Client { return S3Client(s.Endpoint, s.AccessKey, s.SecretKey) }

// S3Client is a plain aws-sdk-go-v2 client of the S3 server at endpoint
// (path-style, checksums only where required), independent of the
// driver's store code; the cluster scenarios of test/e2e use it too.
func S3Client(endpoint, accessKey, secretKey string) *s3.Client {
	return s3.NewFromConfig(aws.Config{
		Region:                     "us-east-1",
		Credentials:                credentials.NewStaticCredentialsProvider(accessKey, secretKey, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	}, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.UsePathStyle = true
	})
}

// ReadObject reads a whole object with the independent client.
func (s *S3) ReadObject(t testing.TB, bucket, key string) ([]byte, error) {
	t.Helper()
	out, err := s.Client().GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}
