// Package gcsstore implements store.Store for Google Cloud Storage with
// cloud.google.com/go/storage, and the matching rclone options.
//
// Secret keys:
//
//	serviceAccountJSON   a service account key (JSON)
//
// Only service-account keys (JSON "type": "service_account") are accepted:
// other credential files (external_account, authorized_user,
// impersonated_service_account, ...) name files, commands or URLs that the
// client library would read or fetch on the node, so a tenant could make
// the driver read node files or call internal addresses. ServiceAccountKey
// refuses them with fault.Invalid before any client is built, for the
// store's own client and for rclone alike.
//
// Without it the driver's Application Default Credentials are used
// (GKE workload identity, GOOGLE_APPLICATION_CREDENTIALS, metadata server).
package gcsstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"cloud.google.com/go/auth"
	"cloud.google.com/go/auth/credentials"
	"cloud.google.com/go/storage"
	"golang.org/x/oauth2"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	htransport "google.golang.org/api/transport/http"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/store"
)

// SecretServiceAccountJSON is the secret key holding a service account key.
const SecretServiceAccountJSON = "serviceAccountJSON"

// Config is the driver-wide GCS configuration.
type Config struct {
	// ProjectID owns the buckets the driver creates and lists.
	ProjectID string
	// Endpoint overrides the JSON API endpoint (an emulator:
	// http://host:port/storage/v1/). With an endpoint and no secret the
	// client sends no credentials.
	Endpoint string
}

// Backend returns the store.Backend for cfg.
func Backend(cfg Config) store.Backend {
	return store.Backend{
		SecretKeys: []string{SecretServiceAccountJSON},
		Open:       func(s store.Secrets, _ string) (store.Store, error) { return store.Opened(Open(cfg, s)) },
		Rclone:     func(s store.Secrets, _ string) (map[string]string, error) { return RcloneOptions(cfg, s) },
		Env:        []string{"GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT"},
	}
}

type gcsStore struct {
	c         *storage.Client
	transport *http.Transport // the client's own, closed by Close
	project   string
}

// scopeCloudPlatform is, with storage.ScopeFullControl, the scope the
// Store's tokens are requested for (those storage.NewClient asks for).
const scopeCloudPlatform = "https://www.googleapis.com/auth/cloud-platform"

// Open returns a Store for cfg with the credentials in secrets.
//
// Everything the Store sends, token requests included, goes through one
// transport of its own, so Close can close its connections: the transport
// storage.NewClient builds sits behind wrappers that do not pass
// CloseIdleConnections on, and the auth library fetches tokens through a
// transport cloned per credential.
func Open(cfg Config, secrets store.Secrets) (store.Store, error) {
	js, err := ServiceAccountKey(secrets, cfg.Endpoint != "")
	if err != nil {
		return nil, err
	}
	scopes := []string{storage.ScopeFullControl, scopeCloudPlatform}
	base := http.DefaultTransport.(*http.Transport).Clone()
	detect := &credentials.DetectOptions{Scopes: scopes, Client: &http.Client{Transport: base}}
	opts := []option.ClientOption{option.WithScopes(scopes...)}
	if cfg.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(cfg.Endpoint))
	}
	var creds *auth.Credentials
	switch {
	case js != "":
		creds, err = credentials.NewCredentialsFromJSON(credentials.ServiceAccount, []byte(js), detect)
	case cfg.Endpoint != "":
		opts = append(opts, option.WithoutAuthentication())
	default:
		creds, err = credentials.DetectDefault(detect)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: GCS credentials: %v", fault.Invalid, err)
	}
	if creds != nil {
		opts = append(opts, option.WithAuthCredentials(creds))
	}
	ctx := context.Background()
	rt, err := htransport.NewTransport(ctx, base, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: GCS client: %v", fault.Invalid, err)
	}
	clientOpts := []option.ClientOption{option.WithHTTPClient(&http.Client{Transport: rt})}
	if cfg.Endpoint != "" {
		clientOpts = append(clientOpts, option.WithEndpoint(cfg.Endpoint))
	}
	c, err := storage.NewClient(ctx, clientOpts...)
	if err != nil {
		return nil, fmt.Errorf("%w: GCS client: %v", fault.Invalid, err)
	}
	return &gcsStore{c: c, transport: base, project: cfg.ProjectID}, nil
}

// Close closes the idle connections of the Store's own transport.
func (s *gcsStore) Close() error {
	s.transport.CloseIdleConnections()
	return s.c.Close()
}

// ServiceAccountKey returns the secret's service-account key ("" when the
// secret has none), or fault.Invalid when the key is not a JSON object of
// type "service_account", or names a token_uri other than Google's (the
// client would post to it from the node). endpoint relaxes the token_uri
// rule: a driver configured with --gcs-endpoint (an emulator or private
// endpoint the admin chose) accepts the key's own token endpoint.
func ServiceAccountKey(secrets store.Secrets, endpoint bool) (string, error) {
	js := secrets[SecretServiceAccountJSON]
	if js == "" {
		return "", nil
	}
	var key struct {
		Type     string `json:"type"`
		TokenURI string `json:"token_uri"`
	}
	if err := json.Unmarshal([]byte(js), &key); err != nil {
		// The JSON error may quote part of the key: never include it.
		return "", fmt.Errorf("%w: secret key %q is not JSON; it must be a service account key (JSON with \"type\": \"service_account\")", fault.Invalid, SecretServiceAccountJSON)
	}
	if key.Type != "service_account" {
		return "", fmt.Errorf("%w: secret key %q holds a credential of type %q; only service account keys (\"type\": \"service_account\") are accepted, because other types name files or URLs the driver would read or fetch", fault.Invalid, SecretServiceAccountJSON, truncate(key.Type, 40))
	}
	switch key.TokenURI {
	case "", googleTokenURI, "https://accounts.google.com/o/oauth2/token":
	default:
		if !endpoint {
			return "", fmt.Errorf("%w: secret key %q names token_uri %q; only Google's token endpoint (%s) is accepted", fault.Invalid, SecretServiceAccountJSON, truncate(key.TokenURI, 80), googleTokenURI)
		}
	}
	return js, nil
}

// googleTokenURI is Google's token endpoint, where the client posts the
// key's signed assertion.
const googleTokenURI = "https://oauth2.googleapis.com/token"

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// RcloneOptions returns rclone "google cloud storage" options, refusing
// the same credentials as Open.
func RcloneOptions(cfg Config, secrets store.Secrets) (map[string]string, error) {
	js, err := ServiceAccountKey(secrets, cfg.Endpoint != "")
	if err != nil {
		return nil, err
	}
	o := map[string]string{"type": "google cloud storage", "bucket_policy_only": "true"}
	if cfg.ProjectID != "" {
		o["project_number"] = cfg.ProjectID
	}
	if cfg.Endpoint != "" {
		o["endpoint"] = cfg.Endpoint
	}
	switch {
	case js != "":
		o["service_account_credentials"] = js
	case cfg.Endpoint != "":
		o["anonymous"] = "true"
	default:
		o["env_auth"] = "true"
	}
	return o, nil
}

func (s *gcsStore) CreateBucket(ctx context.Context, bucket string) error {
	if s.project == "" {
		return fmt.Errorf("%w: creating GCS bucket %q needs the driver's --gcs-project", fault.Precondition, bucket)
	}
	err := s.c.Bucket(bucket).Create(ctx, s.project, nil)
	var ge *googleapi.Error
	if errors.As(err, &ge) && ge.Code == http.StatusConflict {
		// GCS answers 409 both ways; only its own-bucket message says
		// "you already own it". Any other is taken to be someone else's.
		if strings.Contains(strings.ToLower(ge.Message), "already own") {
			return fmt.Errorf("%w: bucket %q already exists", fault.Conflict, bucket)
		}
		return fmt.Errorf("%w: bucket %q already exists, %w", fault.Conflict, bucket, store.TakenElsewhere)
	}
	return mapErr(err, "creating bucket %q", bucket)
}

func (s *gcsStore) HeadBucket(ctx context.Context, bucket string) error {
	_, err := s.c.Bucket(bucket).Attrs(ctx)
	return mapErr(err, "bucket %q", bucket)
}

func (s *gcsStore) DeleteBucket(ctx context.Context, bucket string) error {
	return mapErr(s.c.Bucket(bucket).Delete(ctx), "deleting bucket %q", bucket)
}

func (s *gcsStore) ListBuckets(ctx context.Context) ([]store.Bucket, error) {
	if s.project == "" {
		return nil, fmt.Errorf("%w: listing GCS buckets needs the driver's --gcs-project", fault.Precondition)
	}
	var out []store.Bucket
	it := s.c.Buckets(ctx, s.project)
	for {
		b, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, mapErr(err, "listing buckets")
		}
		out = append(out, store.Bucket{Name: b.Name, Created: b.Created})
	}
}

func (s *gcsStore) GetObject(ctx context.Context, bucket, key string) ([]byte, error) {
	r, err := s.c.Bucket(bucket).Object(key).NewReader(ctx)
	if err != nil {
		return nil, mapErr(err, "reading gs://%s/%s", bucket, key)
	}
	defer r.Close()
	data, err := store.ReadObject(r)
	return data, mapErr(err, "reading gs://%s/%s", bucket, key)
}

func (s *gcsStore) PutObject(ctx context.Context, bucket, key string, data []byte) error {
	w := s.c.Bucket(bucket).Object(key).NewWriter(ctx)
	w.ChunkSize = 0 // one request: these are small objects
	if _, err := w.Write(data); err != nil {
		_ = w.Close()
		return mapErr(err, "writing gs://%s/%s", bucket, key)
	}
	return mapErr(w.Close(), "writing gs://%s/%s", bucket, key)
}

func (s *gcsStore) DeleteObjects(ctx context.Context, bucket string, keys []string) error {
	return store.DeleteEach(ctx, s, bucket, keys)
}

func (s *gcsStore) DeleteObject(ctx context.Context, bucket, key string) error {
	return mapErr(s.c.Bucket(bucket).Object(key).Delete(ctx), "deleting gs://%s/%s", bucket, key)
}

func (s *gcsStore) List(ctx context.Context, bucket, prefix string, limit int, fn func(store.Object) error) error {
	it := s.c.Bucket(bucket).Objects(ctx, &storage.Query{Prefix: prefix})
	for n := 0; limit <= 0 || n < limit; n++ {
		o, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return nil
		}
		if err != nil {
			return mapErr(err, "listing bucket %q", bucket)
		}
		if err := fn(store.Object{Key: o.Name, Size: o.Size}); err != nil {
			return err
		}
	}
	return nil
}

// mapErr wraps a GCS error in the fault kind that describes it.
func mapErr(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	what := fmt.Sprintf(format, args...)
	if errors.Is(err, storage.ErrBucketNotExist) || errors.Is(err, storage.ErrObjectNotExist) {
		return fmt.Errorf("%w: %s does not exist", fault.NotFound, what)
	}
	// The token endpoint refused the key (revoked, deleted, wrong).
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return fmt.Errorf("%w: %s: the credentials were refused (%s)", fault.Denied, what, re.ErrorCode)
	}
	var ae *auth.Error
	if errors.As(err, &ae) && ae.Response != nil && ae.Response.StatusCode >= 400 && ae.Response.StatusCode < 500 {
		return fmt.Errorf("%w: %s: the credentials were refused (token endpoint answered HTTP %d)", fault.Denied, what, ae.Response.StatusCode)
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return store.HTTPError(ge.Code, "", what)
	}
	return fmt.Errorf("%w: %s: %v", fault.Unavailable, what, err)
}
