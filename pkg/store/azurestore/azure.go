// Package azurestore implements store.Store for Azure Blob Storage with
// azblob (a "bucket" is a container in a storage account), and the matching
// rclone options.
//
// Secret keys:
//
//	accountKey   the storage account's shared key
//	sasToken     a SAS token for the account (without the leading '?')
//
// Without either, the driver's own Azure identity is used (workload
// identity, managed identity, environment: azidentity's default chain).
package azurestore

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/store"
)

// Secret keys read by this store.
const (
	SecretAccountKey = "accountKey"
	SecretSASToken   = "sasToken"
)

// Config is the driver-wide Azure configuration.
type Config struct {
	// Account is the storage account for containers the driver creates
	// (volumes with `name`); `source` URIs name their own account.
	Account string
	// Endpoint is the account URL template; "{account}" is replaced.
	// Empty means https://{account}.blob.core.windows.net/. An emulator:
	// http://127.0.0.1:10000/{account}.
	Endpoint string
}

func (c Config) accountURL(account string) (string, string, error) {
	if account == "" {
		account = c.Account
	}
	if account == "" {
		return "", "", fmt.Errorf("%w: no Azure storage account: set the driver's --azure-account or use a source URI https://<account>.blob.core.windows.net/<container>", fault.Invalid)
	}
	tmpl := c.Endpoint
	if tmpl == "" {
		tmpl = "https://{account}.blob.core.windows.net/"
	}
	return account, strings.ReplaceAll(tmpl, "{account}", account), nil
}

// Backend returns the store.Backend for cfg.
func Backend(cfg Config) store.Backend {
	return store.Backend{
		SecretKeys: []string{SecretAccountKey, SecretSASToken},
		Open:       func(s store.Secrets, account string) (store.Store, error) { return store.Opened(Open(cfg, account, s)) },
		Rclone: func(s store.Secrets, account string) (map[string]string, error) {
			return RcloneOptions(cfg, account, s)
		},
		Env: []string{"AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST",
			"IDENTITY_ENDPOINT", "MSI_ENDPOINT"},
	}
}

type azStore struct {
	c *azblob.Client
}

// Close has nothing to release: every azblob client sends through the
// SDK's one HTTP client per process, whose pool is bounded.
func (s *azStore) Close() error { return nil }

// Open returns a Store for the account (or the configured one).
func Open(cfg Config, account string, secrets store.Secrets) (store.Store, error) {
	account, url, err := cfg.accountURL(account)
	if err != nil {
		return nil, err
	}
	var c *azblob.Client
	switch {
	case secrets[SecretAccountKey] != "":
		cred, err := azblob.NewSharedKeyCredential(account, secrets[SecretAccountKey])
		if err != nil {
			return nil, fmt.Errorf("%w: %q is not a valid shared key", fault.Invalid, SecretAccountKey)
		}
		c, err = azblob.NewClientWithSharedKeyCredential(url, cred, nil)
		if err != nil {
			return nil, fmt.Errorf("%w: Azure client: %v", fault.Invalid, err)
		}
	case secrets[SecretSASToken] != "":
		c, err = azblob.NewClientWithNoCredential(strings.TrimSuffix(url, "/")+"/?"+strings.TrimPrefix(secrets[SecretSASToken], "?"), nil)
	default:
		cred, cerr := azidentity.NewDefaultAzureCredential(nil)
		if cerr != nil {
			return nil, fmt.Errorf("%w: no Azure credentials in the secret and no ambient identity: %v", fault.Denied, cerr)
		}
		c, err = azblob.NewClient(url, cred, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: Azure client: %v", fault.Invalid, err)
	}
	return &azStore{c: c}, nil
}

// RcloneOptions returns rclone azureblob options.
func RcloneOptions(cfg Config, account string, secrets store.Secrets) (map[string]string, error) {
	account, url, err := cfg.accountURL(account)
	if err != nil {
		return nil, err
	}
	o := map[string]string{"type": "azureblob", "account": account}
	if cfg.Endpoint != "" {
		o["endpoint"] = strings.TrimSuffix(url, "/")
	}
	switch {
	case secrets[SecretAccountKey] != "":
		o["key"] = secrets[SecretAccountKey]
	case secrets[SecretSASToken] != "":
		o["sas_url"] = strings.TrimSuffix(url, "/") + "?" + strings.TrimPrefix(secrets[SecretSASToken], "?")
		delete(o, "account")
	default:
		o["env_auth"] = "true"
	}
	return o, nil
}

func (s *azStore) CreateBucket(ctx context.Context, name string) error {
	_, err := s.c.CreateContainer(ctx, name, nil)
	if bloberror.HasCode(err, bloberror.ContainerAlreadyExists, bloberror.ContainerBeingDeleted) {
		return fmt.Errorf("%w: container %q already exists", fault.Conflict, name)
	}
	return mapErr(err, "creating container %q", name)
}

// AccountScoped: a container lives inside the storage account.
func (s *azStore) AccountScoped() bool { return true }

func (s *azStore) HeadBucket(ctx context.Context, name string) error {
	_, err := s.c.ServiceClient().NewContainerClient(name).GetProperties(ctx, nil)
	return mapErr(err, "container %q", name)
}

func (s *azStore) DeleteBucket(ctx context.Context, name string) error {
	_, err := s.c.DeleteContainer(ctx, name, nil)
	return mapErr(err, "deleting container %q", name)
}

func (s *azStore) ListBuckets(ctx context.Context) ([]store.Bucket, error) {
	var out []store.Bucket
	p := s.c.NewListContainersPager(nil)
	for p.More() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, mapErr(err, "listing containers")
		}
		for _, c := range page.ContainerItems {
			b := store.Bucket{Name: *c.Name}
			if c.Properties != nil && c.Properties.LastModified != nil {
				b.Created = *c.Properties.LastModified
			}
			out = append(out, b)
		}
	}
	return out, nil
}

func (s *azStore) GetObject(ctx context.Context, name, key string) ([]byte, error) {
	resp, err := s.c.DownloadStream(ctx, name, key, nil)
	if err != nil {
		return nil, mapErr(err, "reading %s/%s", name, key)
	}
	defer resp.Body.Close()
	data, err := store.ReadObject(resp.Body)
	return data, mapErr(err, "reading %s/%s", name, key)
}

func (s *azStore) PutObject(ctx context.Context, name, key string, data []byte) error {
	_, err := s.c.UploadBuffer(ctx, name, key, data, nil)
	return mapErr(err, "writing %s/%s", name, key)
}

func (s *azStore) DeleteObjects(ctx context.Context, name string, keys []string) error {
	return store.DeleteEach(ctx, s, name, keys)
}

func (s *azStore) DeleteObject(ctx context.Context, name, key string) error {
	_, err := s.c.DeleteBlob(ctx, name, key, nil)
	return mapErr(err, "deleting %s/%s", name, key)
}

func (s *azStore) List(ctx context.Context, name, prefix string, limit int, fn func(store.Object) error) error {
	opts := &container.ListBlobsFlatOptions{}
	if prefix != "" {
		opts.Prefix = &prefix
	}
	p := s.c.NewListBlobsFlatPager(name, opts)
	n := 0
	for p.More() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return mapErr(err, "listing container %q", name)
		}
		for _, b := range page.Segment.BlobItems {
			var size int64
			if b.Properties != nil && b.Properties.ContentLength != nil {
				size = *b.Properties.ContentLength
			}
			if err := fn(store.Object{Key: *b.Name, Size: size}); err != nil {
				return err
			}
			if n++; limit > 0 && n >= limit {
				return nil
			}
		}
	}
	return nil
}

// mapErr wraps an Azure error in the fault kind that describes it.
func mapErr(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	what := fmt.Sprintf(format, args...)
	if bloberror.HasCode(err, bloberror.ContainerNotFound, bloberror.BlobNotFound, bloberror.ResourceNotFound) {
		return fmt.Errorf("%w: %s does not exist", fault.NotFound, what)
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return store.HTTPError(re.StatusCode, re.ErrorCode, what)
	}
	// Transport errors carry the request URL, whose query may hold a SAS
	// signature: drop every query string.
	return fmt.Errorf("%w: %s: %s", fault.Unavailable, what, queryRE.ReplaceAllString(err.Error(), "?[redacted]"))
}

var queryRE = regexp.MustCompile(`\?[^\s"']*`)
