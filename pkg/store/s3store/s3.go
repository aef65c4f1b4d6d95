// Package s3store implements store.Store for Amazon S3 and S3-compatible
// servers with aws-sdk-go-v2, and the matching rclone "s3" options.
//
// Secret keys (CSI provisioner / node-stage secrets):
//
//	accessKeyID       access key ID
//	secretAccessKey   secret access key
//	sessionToken      optional session token for temporary credentials
//
// With none of them set, the AWS default credential chain of the driver's
// own environment is used (environment, shared config, web identity, IMDS).
package s3store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/store"
)

// Secret keys read by this store.
const (
	SecretAccessKeyID     = "accessKeyID"
	SecretSecretAccessKey = "secretAccessKey"
	SecretSessionToken    = "sessionToken"
)

// Config is the driver-wide configuration of one S3-compatible account.
type Config struct {
	// Endpoint is the server URL; empty means AWS. "{location}" in it is
	// replaced by the volume's location (the IBM COS region).
	Endpoint string
	// Region is the signing region; empty means "us-east-1".
	Region string
	// PathStyle selects path-style addressing (most self-hosted servers).
	PathStyle bool
	// RcloneProvider is rclone's s3 provider name ("AWS", "Other",
	// "Cloudflare", "IBMCOS", ...); empty means "AWS" without an endpoint
	// and "Other" with one.
	RcloneProvider string
	// AccountScoped says bucket names live inside the account (R2),
	// rather than in one name space every account shares (AWS, IBM COS):
	// see store.AccountScoped.
	AccountScoped bool
	// Ambient holds static keys from the driver's own environment
	// (AWS_ACCESS_KEY_ID, ...), used when a volume has no secret. FUSE
	// servers receive them over their config pipe, never in their
	// environment. Empty means the default chain (env_auth) in the server.
	Ambient Keys
}

// Keys is a static key pair with an optional session token.
type Keys struct {
	AccessKeyID, SecretAccessKey, SessionToken string
}

// envPassthrough returns the environment variables a FUSE server may
// inherit for the default credential chain: paths and names, never secrets.
func envPassthrough() []string {
	return []string{
		"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
		"AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_STS_REGIONAL_ENDPOINTS",
		"AWS_EC2_METADATA_DISABLED", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
		"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
	}
}

// Backend returns the store.Backend for cfg.
func Backend(cfg Config) store.Backend {
	return store.Backend{
		SecretKeys: []string{SecretAccessKeyID, SecretSecretAccessKey, SecretSessionToken},
		Open:       func(s store.Secrets, loc string) (store.Store, error) { return store.Opened(Open(cfg.At(loc), s)) },
		Rclone:     func(s store.Secrets, loc string) (map[string]string, error) { return RcloneOptions(cfg.At(loc), s) },
		Env:        envPassthrough(),
	}
}

type s3Store struct {
	c         *s3.Client
	transport *http.Transport // hc's, emptied by Close
	scoped    bool            // Config.AccountScoped
}

// AccountScoped reports Config.AccountScoped.
func (s *s3Store) AccountScoped() bool { return s.scoped }

// At returns cfg for a volume at location: "{location}" in the endpoint is
// replaced, and an empty Region takes the location.
func (cfg Config) At(location string) Config {
	if location == "" {
		return cfg
	}
	cfg.Endpoint = strings.ReplaceAll(cfg.Endpoint, "{location}", location)
	if cfg.Region == "" {
		cfg.Region = location
	}
	return cfg
}

func (cfg Config) region() string {
	if cfg.Region == "" {
		return "us-east-1"
	}
	return cfg.Region
}

// staticCredentials returns the keys from secrets, or ok=false when the
// secrets hold none (ambient identity). Half a key pair is fault.Invalid.
func staticCredentials(s store.Secrets) (id, secret, token string, ok bool, err error) {
	id, secret, token = s[SecretAccessKeyID], s[SecretSecretAccessKey], s[SecretSessionToken]
	switch {
	case id == "" && secret == "" && token == "":
		return "", "", "", false, nil
	case id == "" || secret == "":
		return "", "", "", false, fmt.Errorf("%w: the secret must hold both %q and %q (it has only one of them)", fault.Invalid, SecretAccessKeyID, SecretSecretAccessKey)
	}
	return id, secret, token, true, nil
}

// Open returns a Store for cfg with the credentials in secrets.
func Open(cfg Config, secrets store.Secrets) (store.Store, error) {
	id, secret, token, static, err := staticCredentials(secrets)
	if err != nil {
		return nil, err
	}
	hc, tr := newHTTPClient()
	var awsCfg aws.Config
	if static {
		awsCfg = aws.Config{
			Region:      cfg.region(),
			Credentials: credentials.NewStaticCredentialsProvider(id, secret, token),
		}
	} else {
		// Token requests (IMDS, STS for web identity) go through the
		// Store's client too, so Close closes their connections.
		awsCfg, err = config.LoadDefaultConfig(context.Background(), config.WithRegion(cfg.region()), config.WithHTTPClient(hc))
		if err != nil {
			return nil, fmt.Errorf("%w: loading the AWS default credential chain: %v", fault.Unavailable, err)
		}
	}
	// Servers other than AWS rarely support the newer flexible checksums.
	awsCfg.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
	awsCfg.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	c := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
		o.HTTPClient = hc
	})
	return &s3Store{c: c, transport: tr, scoped: cfg.AccountScoped}, nil
}

// idleTimeout closes a Store's connection that no request has used for
// that long: a Store serves one call, whose requests follow each other
// closely, and a connection returned to the pool after Close (a body
// closed late) must not stay open for the SDK's default 90 s.
const idleTimeout = 5 * time.Second

// newHTTPClient returns the HTTP client of one Store and its transport:
// the SDK's default transport settings, connections kept between the
// call's requests (a remote store costs a TCP and TLS handshake per new
// connection) and closed by Close. Redirects are followed as the SDK's
// own client follows them, 307 and 308 only (they keep the method), and a
// session token never goes to a host other than the first request's.
func newHTTPClient() (*http.Client, *http.Transport) {
	tr := awshttp.NewBuildableClient().GetTransport()
	tr.IdleConnTimeout = idleTimeout
	return &http.Client{Transport: tr, CheckRedirect: sdkRedirect}, tr
}

func sdkRedirect(r *http.Request, via []*http.Request) error {
	if c := r.Response.StatusCode; c != http.StatusTemporaryRedirect && c != http.StatusPermanentRedirect {
		return http.ErrUseLastResponse
	}
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	// The client copies the first request's headers into every hop, so
	// compare with its host, not the last hop's.
	if len(via) > 0 && via[0].URL.Host != r.URL.Host {
		r.Header.Del("X-Amz-Security-Token")
	}
	return nil
}

// Close closes the Store's idle connections; a Store is not used after
// Close.
func (s *s3Store) Close() error {
	s.transport.CloseIdleConnections()
	return nil
}

// RcloneOptions returns rclone s3 backend options for cfg and secrets.
func RcloneOptions(cfg Config, secrets store.Secrets) (map[string]string, error) {
	id, secret, token, static, err := staticCredentials(secrets)
	if err != nil {
		return nil, err
	}
	provider := cfg.RcloneProvider
	if provider == "" {
		provider = "AWS"
		if cfg.Endpoint != "" {
			provider = "Other"
		}
	}
	o := map[string]string{
		"type":             "s3",
		"provider":         provider,
		"region":           cfg.region(),
		"force_path_style": strconv.FormatBool(cfg.PathStyle),
		// The driver checks buckets itself; never let a mount create one.
		"no_check_bucket": "true",
	}
	if cfg.Endpoint != "" {
		o["endpoint"] = cfg.Endpoint
	}
	if !static && cfg.Ambient.AccessKeyID != "" {
		id, secret, token, static = cfg.Ambient.AccessKeyID, cfg.Ambient.SecretAccessKey, cfg.Ambient.SessionToken, true
	}
	if static {
		o["access_key_id"], o["secret_access_key"] = id, secret
		if token != "" {
			o["session_token"] = token
		}
	} else {
		o["env_auth"] = "true"
	}
	return o, nil
}

func (s *s3Store) CreateBucket(ctx context.Context, bucket string) error {
	_, err := s.c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	var owned *types.BucketAlreadyOwnedByYou
	var exists *types.BucketAlreadyExists
	switch {
	case errors.As(err, &owned):
		return fmt.Errorf("%w: bucket %q already exists", fault.Conflict, bucket)
	case errors.As(err, &exists):
		return fmt.Errorf("%w: bucket %q already exists, %w", fault.Conflict, bucket, store.TakenElsewhere)
	}
	return mapErr(err, "creating bucket %q", bucket)
}

func (s *s3Store) HeadBucket(ctx context.Context, bucket string) error {
	_, err := s.c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)})
	return mapErr(err, "bucket %q", bucket)
}

func (s *s3Store) DeleteBucket(ctx context.Context, bucket string) error {
	_, err := s.c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(bucket)})
	return mapErr(err, "deleting bucket %q", bucket)
}

func (s *s3Store) ListBuckets(ctx context.Context) ([]store.Bucket, error) {
	var out []store.Bucket
	p := s3.NewListBucketsPaginator(s.c, &s3.ListBucketsInput{})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, mapErr(err, "listing buckets")
		}
		for _, b := range page.Buckets {
			out = append(out, store.Bucket{Name: aws.ToString(b.Name), Created: aws.ToTime(b.CreationDate)})
		}
	}
	return out, nil
}

func (s *s3Store) GetObject(ctx context.Context, bucket, key string) ([]byte, error) {
	out, err := s.c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, mapErr(err, "reading s3://%s/%s", bucket, key)
	}
	defer out.Body.Close()
	data, err := store.ReadObject(out.Body)
	if err != nil {
		return nil, fmt.Errorf("%w: reading s3://%s/%s: %v", fault.Unavailable, bucket, key, err)
	}
	return data, nil
}

func (s *s3Store) PutObject(ctx context.Context, bucket, key string, data []byte) error {
	_, err := s.c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data)))})
	return mapErr(err, "writing s3://%s/%s", bucket, key)
}

// DeleteObjects deletes keys in one request: store.Wrap passes at most
// store.MaxDeleteBatch (S3's limit).
func (s *s3Store) DeleteObjects(ctx context.Context, bucket string, keys []string) error {
	ids := make([]types.ObjectIdentifier, len(keys))
	for i, k := range keys {
		ids[i] = types.ObjectIdentifier{Key: aws.String(k)}
	}
	out, err := s.c.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(bucket), Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)}})
	if err != nil {
		return mapErr(err, "deleting objects in bucket %q", bucket)
	}
	if len(out.Errors) > 0 {
		e := out.Errors[0]
		return fmt.Errorf("%w: deleting s3://%s/%s: %s %s", fault.Unavailable, bucket, aws.ToString(e.Key), aws.ToString(e.Code), aws.ToString(e.Message))
	}
	return nil
}

func (s *s3Store) List(ctx context.Context, bucket, prefix string, limit int, fn func(store.Object) error) error {
	in := &s3.ListObjectsV2Input{Bucket: aws.String(bucket)}
	if prefix != "" {
		in.Prefix = aws.String(prefix)
	}
	if limit > 0 && limit < 1000 {
		in.MaxKeys = aws.Int32(int32(limit))
	}
	p := s3.NewListObjectsV2Paginator(s.c, in)
	n := 0
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return mapErr(err, "listing bucket %q", bucket)
		}
		for _, o := range page.Contents {
			if err := fn(store.Object{Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size)}); err != nil {
				return err
			}
			if n++; limit > 0 && n >= limit {
				return nil
			}
		}
	}
	return nil
}

// mapErr wraps an SDK error in the fault kind that describes it. The message
// carries the SDK's error code but never request headers or credentials.
func mapErr(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	what := fmt.Sprintf(format, args...)
	var nb *types.NoSuchBucket
	var nk *types.NoSuchKey
	var nf *types.NotFound
	if errors.As(err, &nb) || errors.As(err, &nk) || errors.As(err, &nf) {
		return fmt.Errorf("%w: %s does not exist", fault.NotFound, what)
	}
	code := ""
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	status := 0
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	switch {
	case code == "NoSuchBucket" || code == "NoSuchKey":
		return fmt.Errorf("%w: %s does not exist", fault.NotFound, what)
	case code == "AccessDenied" || code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch":
		return store.HTTPError(http.StatusForbidden, code, what)
	case code == "BucketAlreadyExists" || code == "BucketAlreadyOwnedByYou":
		return store.HTTPError(http.StatusConflict, code, what)
	case code == "InvalidBucketName":
		return store.HTTPError(http.StatusBadRequest, code, what)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return fmt.Errorf("%w: %s: %w", fault.Unavailable, what, err)
	case status != 0:
		return store.HTTPError(status, code, what)
	}
	// Transport errors name the endpoint and key, never credentials.
	return fmt.Errorf("%w: %s: %v", fault.Unavailable, what, err)
}
