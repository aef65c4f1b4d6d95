package gcsstore_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/store"
	"github.com/bucket-csi/bucket-csi/pkg/store/gcsstore"
)

// TestOnlyServiceAccountKeys: credentials of any type but service_account
// (which name files, commands or URLs the client would read or fetch) are
// refused with fault.Invalid naming the key and the accepted type, by Open
// and by RcloneOptions alike, before anything is fetched.
func TestOnlyServiceAccountKeys(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"access_token":"x","token_type":"Bearer","expires_in":3600}`))
	}))
	defer srv.Close()
	mk := func(m map[string]any) string { b, _ := json.Marshal(m); return string(b) }
	cases := map[string]string{
		"external_account (file source)": mk(map[string]any{"type": "external_account", "audience": "//iam.googleapis.com/x",
			"subject_token_type": "urn:ietf:params:oauth:token-type:jwt", "token_url": srv.URL + "/token",
			"credential_source": map[string]any{"file": "/etc/shadow"}}),
		"external_account (url source)": mk(map[string]any{"type": "external_account", "audience": "//iam.googleapis.com/x",
			"subject_token_type": "urn:ietf:params:oauth:token-type:jwt", "token_url": srv.URL + "/token",
			"credential_source": map[string]any{"url": srv.URL + "/metadata"}}),
		"authorized_user": mk(map[string]any{"type": "authorized_user", "client_id": "c", "client_secret": "s", "refresh_token": "r",
			"token_uri": srv.URL + "/token"}),
		"impersonated_service_account": mk(map[string]any{"type": "impersonated_service_account",
			"service_account_impersonation_url": srv.URL + "/impersonate",
			"source_credentials":                map[string]any{"type": "authorized_user", "token_uri": srv.URL}}),
		"external_account_authorized_user": mk(map[string]any{"type": "external_account_authorized_user", "token_url": srv.URL}),
		"no type":                          mk(map[string]any{"private_key": "x"}),
		"not JSON":                         "-----BEGIN PRIVATE KEY-----\nnotjson",
	}
	cfg := gcsstore.Config{ProjectID: "p"}
	for name, js := range cases {
		t.Run(name, func(t *testing.T) {
			secrets := store.Secrets{gcsstore.SecretServiceAccountJSON: js}
			_, openErr := gcsstore.Open(cfg, secrets)
			_, rcloneErr := gcsstore.Backend(cfg).Rclone(secrets, "")
			for what, err := range map[string]error{"Open": openErr, "Rclone": rcloneErr} {
				if !errors.Is(err, fault.Invalid) {
					t.Fatalf("%s: got %v, want fault.Invalid", what, err)
				}
				msg := err.Error()
				if !strings.Contains(msg, gcsstore.SecretServiceAccountJSON) || !strings.Contains(msg, `"type": "service_account"`) {
					t.Errorf("%s: message does not name the key and the accepted type: %q", what, msg)
				}
				if strings.Contains(msg, srv.URL) || strings.Contains(msg, "/etc/shadow") || strings.Contains(msg, "notjson") {
					t.Errorf("%s: message quotes the credential: %q", what, msg)
				}
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the refused credentials made %d requests", n)
	}
}

// TestServiceAccountKeyAccepted: a service account key, and no key at all,
// still build a client and rclone options.
func TestServiceAccountKeyAccepted(t *testing.T) {
	js, _ := json.Marshal(map[string]string{"type": "service_account", "project_id": "p", "private_key_id": "k",
		"private_key": "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n", "client_email": "sa@p.iam.gserviceaccount.com",
		"token_uri": "https://oauth2.googleapis.com/token"})
	cfg := gcsstore.Config{ProjectID: "p", Endpoint: "http://127.0.0.1:1/storage/v1/"}
	for _, secrets := range []store.Secrets{{gcsstore.SecretServiceAccountJSON: string(js)}, {}} {
		if _, err := gcsstore.Open(cfg, secrets); err != nil {
			t.Fatalf("Open: %v", err)
		}
		o, err := gcsstore.RcloneOptions(cfg, secrets)
		if err != nil {
			t.Fatalf("RcloneOptions: %v", err)
		}
		if (secrets[gcsstore.SecretServiceAccountJSON] != "") != (o["service_account_credentials"] != "") {
			t.Fatalf("rclone options: %v", o)
		}
	}
}

// TestServiceAccountTokenURI: a service account key may not send the
// client to another token endpoint (it would post from the node to any
// address), unless the admin pointed the driver at another GCS endpoint.
func TestServiceAccountTokenURI(t *testing.T) {
	js, _ := json.Marshal(map[string]string{"type": "service_account", "private_key": "k", "client_email": "sa@p.iam.gserviceaccount.com",
		"token_uri": "http://169.254.169.254/computeMetadata/v1/"})
	secrets := store.Secrets{gcsstore.SecretServiceAccountJSON: string(js)}
	_, err := gcsstore.RcloneOptions(gcsstore.Config{ProjectID: "p"}, secrets)
	if !errors.Is(err, fault.Invalid) || !strings.Contains(err.Error(), "token_uri") || !strings.Contains(err.Error(), "https://oauth2.googleapis.com/token") {
		t.Fatalf("foreign token_uri: got %v, want fault.Invalid naming token_uri and Google's", err)
	}
	if _, err := gcsstore.Open(gcsstore.Config{ProjectID: "p"}, secrets); !errors.Is(err, fault.Invalid) {
		t.Fatalf("Open with a foreign token_uri: %v", err)
	}
	if _, err := gcsstore.RcloneOptions(gcsstore.Config{ProjectID: "p", Endpoint: "http://127.0.0.1:1/storage/v1/"}, secrets); err != nil {
		t.Fatalf("with --gcs-endpoint the key's token endpoint is the admin's choice: %v", err)
	}
}

// TestKeySignsRequestsAndCloseReleases: requests of a Store opened with a
// service account key carry the token the key was exchanged for (the
// Store's own transport still authenticates), and Close closes the
// connection the Store kept (the server sees it closed).
func TestKeySignsRequestsAndCloseReleases(t *testing.T) {
	pk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(pk)
	if err != nil {
		t.Fatal(err)
	}
	var tokens, authorized atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/token":
			tokens.Add(1)
			_, _ = w.Write([]byte(`{"access_token":"tok-123","token_type":"Bearer","expires_in":3600}`))
		case r.URL.Path == "/storage/v1/b/bkt":
			if r.Header.Get("Authorization") == "Bearer tok-123" {
				authorized.Add(1)
			}
			_, _ = w.Write([]byte(`{"kind":"storage#bucket","name":"bkt"}`))
		default:
			http.NotFound(w, r)
		}
	}))
	var open atomic.Int64
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	srv.Start()
	defer srv.Close()
	js, _ := json.Marshal(map[string]string{"type": "service_account", "project_id": "p", "private_key_id": "k1",
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": "sa@p.iam.gserviceaccount.com", "token_uri": srv.URL + "/token"})
	s, err := gcsstore.Open(gcsstore.Config{ProjectID: "p", Endpoint: srv.URL + "/storage/v1/"},
		store.Secrets{gcsstore.SecretServiceAccountJSON: string(js)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.HeadBucket(context.Background(), "bkt"); err != nil {
		t.Fatalf("HeadBucket: %v", err)
	}
	if tokens.Load() != 1 || authorized.Load() != 1 {
		t.Fatalf("token requests %d, authorized bucket requests %d; want 1 and 1", tokens.Load(), authorized.Load())
	}
	if n := open.Load(); n == 0 {
		t.Fatal("the Store kept no connection open: nothing for Close to prove")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for open.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := open.Load(); n != 0 {
		t.Fatalf("%d connections still open after Close", n)
	}
}
