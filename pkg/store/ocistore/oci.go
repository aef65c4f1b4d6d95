// Package ocistore implements store.Store for OCI Object Storage with
// oci-go-sdk, and the matching rclone "oracleobjectstorage" options.
//
// Secret keys (an OCI API signing key):
//
//	tenancyOCID, userOCID, fingerprint, privateKey (PEM), passphrase (optional)
//
// Without them the driver's instance principal is used.
package ocistore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/oracle/oci-go-sdk/v65/common"
	"github.com/oracle/oci-go-sdk/v65/common/auth"
	"github.com/oracle/oci-go-sdk/v65/objectstorage"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/store"
)

// Secret keys read by this store.
const (
	SecretTenancy     = "tenancyOCID"
	SecretUser        = "userOCID"
	SecretFingerprint = "fingerprint"
	SecretPrivateKey  = "privateKey"
	SecretPassphrase  = "passphrase"
)

// Config is the driver-wide OCI configuration.
type Config struct {
	// Region is the default region (volumes may name one: oci://b@region).
	Region string
	// Compartment holds the buckets the driver creates and lists.
	Compartment string
	// Namespace is the Object Storage namespace; empty means look it up.
	Namespace string
	// Endpoint overrides the service endpoint ("{region}" is replaced).
	Endpoint string
}

func (c Config) at(region string) Config {
	if region != "" {
		c.Region = region
	}
	c.Endpoint = strings.ReplaceAll(c.Endpoint, "{region}", c.Region)
	return c
}

// Backend returns the store.Backend for cfg.
func Backend(cfg Config) store.Backend {
	return store.Backend{
		SecretKeys:      []string{SecretTenancy, SecretUser, SecretFingerprint, SecretPrivateKey},
		Open:            func(s store.Secrets, loc string) (store.Store, error) { return store.Opened(Open(cfg.at(loc), s)) },
		Rclone:          func(s store.Secrets, loc string) (map[string]string, error) { return RcloneOptions(cfg.at(loc), s) },
		DefaultLocation: cfg.Region,
	}
}

type apiKey struct{ tenancy, user, fingerprint, key, passphrase string }

func keyFrom(s store.Secrets) (apiKey, bool, error) {
	k := apiKey{s[SecretTenancy], s[SecretUser], s[SecretFingerprint], s[SecretPrivateKey], s[SecretPassphrase]}
	switch {
	case k.tenancy == "" && k.user == "" && k.fingerprint == "" && k.key == "":
		return k, false, nil
	case k.tenancy == "" || k.user == "" || k.fingerprint == "" || k.key == "":
		return k, false, fmt.Errorf("%w: an OCI secret needs %s, %s, %s and %s", fault.Invalid, SecretTenancy, SecretUser, SecretFingerprint, SecretPrivateKey)
	case strings.ContainsAny(k.tenancy+k.user+k.fingerprint+k.passphrase, "\r\n"):
		// They are written into an INI file for rclone: no line breaks.
		return k, false, fmt.Errorf("%w: %s, %s, %s and %s must be single lines", fault.Invalid, SecretTenancy, SecretUser, SecretFingerprint, SecretPassphrase)
	}
	return k, true, nil
}

type ociStore struct {
	c      objectstorage.ObjectStorageClient
	cfg    Config
	tokens *dispatchers // the instance principal's token clients
	nsOnce sync.Once
	ns     string
	nsErr  error
}

// Open returns a Store for cfg with the key in secrets.
func Open(cfg Config, secrets store.Secrets) (store.Store, error) {
	k, ok, err := keyFrom(secrets)
	if err != nil {
		return nil, err
	}
	var p common.ConfigurationProvider
	tokens := &dispatchers{}
	if ok {
		var pass *string
		if k.passphrase != "" {
			pass = &k.passphrase
		}
		p = common.NewRawConfigurationProvider(k.tenancy, k.user, cfg.Region, k.fingerprint, k.key, pass)
	} else if p, err = auth.InstancePrincipalConfigurationProviderWithCustomClient(tokens.record); err != nil {
		return nil, fmt.Errorf("%w: no OCI key in the secret and no instance principal: %v", fault.Denied, err)
	}
	c, err := objectstorage.NewObjectStorageClientWithConfigurationProvider(p)
	if err != nil {
		return nil, fmt.Errorf("%w: OCI client: %v", fault.Invalid, err)
	}
	if cfg.Endpoint != "" {
		c.Host = cfg.Endpoint
	}
	return &ociStore{c: c, cfg: cfg, tokens: tokens}, nil
}

// Close closes the idle connections of the client's own transport and of
// the instance principal's token clients (the SDK builds a transport per
// client, behind its certificate-refreshing wrapper).
func (s *ociStore) Close() error {
	closeIdle(s.c.HTTPClient)
	s.tokens.closeIdle()
	return nil
}

// dispatchers records the HTTP clients the SDK builds for an instance
// principal's token requests (it hands each to record, a
// dispatcher modifier, and uses it unchanged), so that Close reaches them.
type dispatchers struct {
	mu   sync.Mutex
	list []common.HTTPRequestDispatcher
}

func (d *dispatchers) record(c common.HTTPRequestDispatcher) (common.HTTPRequestDispatcher, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.list = append(d.list, c)
	return c, nil
}

func (d *dispatchers) closeIdle() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.list {
		closeIdle(c)
	}
}

// closeIdle closes the idle connections of an SDK client's transport,
// unwrapping the SDK's certificate-refreshing wrapper; a dispatcher that
// is not an *http.Client is left alone.
func closeIdle(d common.HTTPRequestDispatcher) {
	hc, ok := d.(*http.Client)
	if !ok {
		return
	}
	rt := hc.Transport
	if w, ok := rt.(interface{ Delegate() http.RoundTripper }); ok {
		rt = w.Delegate()
	}
	if rt == nil {
		return // http.DefaultTransport, shared by the process
	}
	if c, ok := rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// RcloneOptions returns rclone oracleobjectstorage options. A signing key
// travels as "file:" entries that the consumer writes to private files
// (see store.Materialize): rclone reads OCI keys from a config file.
func RcloneOptions(cfg Config, secrets store.Secrets) (map[string]string, error) {
	k, ok, err := keyFrom(secrets)
	if err != nil {
		return nil, err
	}
	o := map[string]string{"type": "oracleobjectstorage", "region": cfg.Region, "compartment": cfg.Compartment}
	// rclone needs the namespace; look it up with the same credentials.
	ns := cfg.Namespace
	if ns == "" {
		st, err := Open(cfg, secrets)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ns, err = st.(*ociStore).namespace(ctx)
		_ = st.Close()
		if err != nil {
			return nil, err
		}
	}
	o["namespace"] = ns
	if cfg.Endpoint != "" {
		o["endpoint"] = cfg.Endpoint
	}
	if !ok {
		o["provider"] = "instance_principal_auth"
		return o, nil
	}
	conf := fmt.Sprintf("[DEFAULT]\nuser=%s\nfingerprint=%s\ntenancy=%s\nregion=%s\nkey_file={file:oci_api_key.pem}\n", k.user, k.fingerprint, k.tenancy, cfg.Region)
	if k.passphrase != "" {
		conf += "pass_phrase=" + k.passphrase + "\n"
	}
	o["provider"] = "user_principal_auth"
	o["config_profile"] = "DEFAULT"
	o["config_file"] = "{file:oci_config}"
	o[store.FilePrefix+"oci_config"] = conf
	o[store.FilePrefix+"oci_api_key.pem"] = k.key
	return o, nil
}

func (s *ociStore) namespace(ctx context.Context) (string, error) {
	if s.cfg.Namespace != "" {
		return s.cfg.Namespace, nil
	}
	s.nsOnce.Do(func() {
		resp, err := s.c.GetNamespace(ctx, objectstorage.GetNamespaceRequest{})
		if err != nil {
			s.nsErr = mapErr(err, "looking up the Object Storage namespace")
			return
		}
		s.ns = *resp.Value
	})
	return s.ns, s.nsErr
}

func (s *ociStore) CreateBucket(ctx context.Context, bucket string) error {
	ns, err := s.namespace(ctx)
	if err != nil {
		return err
	}
	if s.cfg.Compartment == "" {
		return fmt.Errorf("%w: creating OCI bucket %q needs the driver's --oci-compartment", fault.Precondition, bucket)
	}
	_, err = s.c.CreateBucket(ctx, objectstorage.CreateBucketRequest{NamespaceName: &ns,
		CreateBucketDetails: objectstorage.CreateBucketDetails{Name: &bucket, CompartmentId: &s.cfg.Compartment}})
	return mapErr(err, "creating bucket %q", bucket)
}

// AccountScoped: a bucket lives inside the tenancy's namespace.
func (s *ociStore) AccountScoped() bool { return true }

func (s *ociStore) HeadBucket(ctx context.Context, bucket string) error {
	ns, err := s.namespace(ctx)
	if err != nil {
		return err
	}
	_, err = s.c.HeadBucket(ctx, objectstorage.HeadBucketRequest{NamespaceName: &ns, BucketName: &bucket})
	return mapErr(err, "bucket %q", bucket)
}

func (s *ociStore) DeleteBucket(ctx context.Context, bucket string) error {
	ns, err := s.namespace(ctx)
	if err != nil {
		return err
	}
	_, err = s.c.DeleteBucket(ctx, objectstorage.DeleteBucketRequest{NamespaceName: &ns, BucketName: &bucket})
	return mapErr(err, "deleting bucket %q", bucket)
}

func (s *ociStore) ListBuckets(ctx context.Context) ([]store.Bucket, error) {
	ns, err := s.namespace(ctx)
	if err != nil {
		return nil, err
	}
	var out []store.Bucket
	req := objectstorage.ListBucketsRequest{NamespaceName: &ns, CompartmentId: &s.cfg.Compartment}
	for {
		resp, err := s.c.ListBuckets(ctx, req)
		if err != nil {
			return nil, mapErr(err, "listing buckets")
		}
		for _, b := range resp.Items {
			lb := store.Bucket{Name: *b.Name}
			if b.TimeCreated != nil {
				lb.Created = b.TimeCreated.Time
			}
			out = append(out, lb)
		}
		if resp.OpcNextPage == nil {
			return out, nil
		}
		req.Page = resp.OpcNextPage
	}
}

func (s *ociStore) GetObject(ctx context.Context, bucket, key string) ([]byte, error) {
	ns, err := s.namespace(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := s.c.GetObject(ctx, objectstorage.GetObjectRequest{NamespaceName: &ns, BucketName: &bucket, ObjectName: &key})
	if err != nil {
		return nil, mapErr(err, "reading %s/%s", bucket, key)
	}
	defer resp.Content.Close()
	data, err := store.ReadObject(resp.Content)
	return data, mapErr(err, "reading %s/%s", bucket, key)
}

func (s *ociStore) PutObject(ctx context.Context, bucket, key string, data []byte) error {
	ns, err := s.namespace(ctx)
	if err != nil {
		return err
	}
	n := int64(len(data))
	_, err = s.c.PutObject(ctx, objectstorage.PutObjectRequest{NamespaceName: &ns, BucketName: &bucket, ObjectName: &key,
		ContentLength: &n, PutObjectBody: io.NopCloser(strings.NewReader(string(data)))})
	return mapErr(err, "writing %s/%s", bucket, key)
}

func (s *ociStore) DeleteObjects(ctx context.Context, bucket string, keys []string) error {
	return store.DeleteEach(ctx, s, bucket, keys)
}

func (s *ociStore) DeleteObject(ctx context.Context, bucket, key string) error {
	ns, err := s.namespace(ctx)
	if err != nil {
		return err
	}
	_, err = s.c.DeleteObject(ctx, objectstorage.DeleteObjectRequest{NamespaceName: &ns, BucketName: &bucket, ObjectName: &key})
	return mapErr(err, "deleting %s/%s", bucket, key)
}

func (s *ociStore) List(ctx context.Context, bucket, prefix string, limit int, fn func(store.Object) error) error {
	ns, err := s.namespace(ctx)
	if err != nil {
		return err
	}
	fields := "name,size"
	req := objectstorage.ListObjectsRequest{NamespaceName: &ns, BucketName: &bucket, Fields: &fields}
	if prefix != "" {
		req.Prefix = &prefix
	}
	n := 0
	for {
		resp, err := s.c.ListObjects(ctx, req)
		if err != nil {
			return mapErr(err, "listing bucket %q", bucket)
		}
		for _, o := range resp.Objects {
			var size int64
			if o.Size != nil {
				size = *o.Size
			}
			if err := fn(store.Object{Key: *o.Name, Size: size}); err != nil {
				return err
			}
			if n++; limit > 0 && n >= limit {
				return nil
			}
		}
		if resp.NextStartWith == nil {
			return nil
		}
		req.Start = resp.NextStartWith
	}
}

// mapErr wraps an OCI error in the fault kind that describes it.
func mapErr(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	what := fmt.Sprintf(format, args...)
	var se common.ServiceError
	if errors.As(err, &se) {
		return store.HTTPError(se.GetHTTPStatusCode(), se.GetCode(), what)
	}
	return fmt.Errorf("%w: %s: %v", fault.Unavailable, what, err)
}
