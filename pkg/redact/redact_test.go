package redact_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/redact"
	"github.com/bucket-csi/bucket-csi/pkg/store/azurestore"
	"github.com/bucket-csi/bucket-csi/pkg/store/gcsstore"
	"github.com/bucket-csi/bucket-csi/pkg/store/ocistore"
	"github.com/bucket-csi/bucket-csi/pkg/store/s3store"
)

const pem = "-----BEGIN PRIVATE KEY-----\n" +
	"MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n" +
	"MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n" +
	"NMoSfm76oqFvAp8Gy0iz5sxjZmSnXyCdPEovGhLa0VzMaQ8s+CLOyS56YyCFGeJZ\n" +
	"-----END PRIVATE KEY-----\n"

// storeSecrets are realistic secrets for every store's keys, with the
// characters that break URLs, JSON and log quoting.
func storeSecrets() map[string]map[string]string {
	sa, _ := json.MarshalIndent(map[string]string{
		"type": "service_account", "project_id": "proj", "private_key_id": "0123456789abcdef0123456789abcdef01234567",
		"private_key": pem, "client_email": "sa@proj.iam.gserviceaccount.com", "token_uri": "https://oauth2.googleapis.com/token",
	}, "", "  ")
	return map[string]map[string]string{
		"s3": {
			s3store.SecretAccessKeyID:     "AKIAIOSFODNN7EXAMPLE",
			s3store.SecretSecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCY=EXAMPLE&%KEY",
			s3store.SecretSessionToken:    "FwoGZXIvYXdzEJr//////////wEaDM+token%2F&x=y\nsecond-line-of-token",
		},
		"gcs": {gcsstore.SecretServiceAccountJSON: string(sa)},
		"azure": {
			azurestore.SecretAccountKey: "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==",
			azurestore.SecretSASToken:   "sv=2022-11-02&ss=b&srt=sco&sp=rwdlac&se=2030-01-01T00:00:00Z&sig=ab%2Bcd%3DsIgNaTuRe%2F0123",
		},
		"oci": {
			ocistore.SecretTenancy:     "ocid1.tenancy.oc1..aaaaaaaaba3pv6wkcr4jqae5f15p2b2m2yt2j6rx32uzr4h25vqstifsfdsq",
			ocistore.SecretUser:        "ocid1.user.oc1..aaaaaaaa65vwl75tewwm32rgqvm6i34unq",
			ocistore.SecretFingerprint: "20:3b:97:13:55:1c:5b:0d:d3:37:d8:50:4e:c5:3a:34",
			ocistore.SecretPrivateKey:  pem,
			ocistore.SecretPassphrase:  `p@ss&w%rd+/="quoted"`,
		},
	}
}

// leakForms are the ways an engine may print v: the tests put each in a
// message and check that none is left after masking.
func leakForms(v string) []string {
	js, _ := json.Marshal(v)
	out := []string{v, url.QueryEscape(v), url.PathEscape(v), base64.StdEncoding.EncodeToString([]byte(v)),
		base64.RawURLEncoding.EncodeToString([]byte(v)), strconv.Quote(v), string(js), strconv.Quote(strconv.Quote(v))}
	for _, l := range strings.Split(v, "\n") {
		if len(strings.TrimSpace(l)) >= redact.MinLen {
			out = append(out, l)
		}
	}
	return out
}

// secretParts are the substrings that must never survive: each value's
// lines and, for JSON and query values, their credential parts.
func secretParts(v string) []string {
	var out []string
	for _, l := range strings.Split(v, "\n") {
		if l = strings.TrimSpace(l); len(l) >= redact.MinLen {
			out = append(out, l)
		}
	}
	var obj map[string]string
	if json.Unmarshal([]byte(v), &obj) == nil {
		out = append(out, secretParts(obj["private_key"])...)
		out = append(out, obj["private_key_id"])
	}
	if q, err := url.ParseQuery(v); err == nil && strings.Contains(v, "sig=") {
		out = append(out, q.Get("sig"), url.QueryEscape(q.Get("sig")))
	}
	return out
}

func TestRedactEveryStoreSecret(t *testing.T) {
	for kind, secrets := range storeSecrets() {
		r := redact.FromSecrets(secrets)
		for key, v := range secrets {
			for i, form := range leakForms(v) {
				msg := fmt.Sprintf("%s: GET https://host/b?x=1&%s failed: %s (%v)", kind, form, form, errors.New(form))
				got := r.String(msg)
				for _, part := range append(leakForms(v), secretParts(v)...) {
					for _, p := range leakForms(part) {
						if len(strings.Trim(p, `"`)) >= redact.MinLen && strings.Contains(got, strings.Trim(p, `"`)) {
							t.Errorf("%s %s form %d: %q survives in %q", kind, key, i, p, got)
						}
					}
				}
				if !strings.Contains(got, redact.Mask) || !strings.HasPrefix(got, kind+": GET https://host/b?x=1&") {
					t.Errorf("%s %s form %d: masked message lost its context: %q", kind, key, i, got)
				}
			}
		}
	}
}

func TestRedactSASTokenParameters(t *testing.T) {
	sas := storeSecrets()["azure"][azurestore.SecretSASToken]
	r := redact.FromSecrets(map[string]string{azurestore.SecretSASToken: sas})
	q, _ := url.ParseQuery(sas)
	// An engine that parses the SAS and re-encodes it in another order.
	reencoded := "https://acct.blob.core.windows.net/c?" + q.Encode()
	parsed, _ := url.Parse("https://acct.blob.core.windows.net/c?" + sas)
	for _, msg := range []string{
		reencoded,
		(&url.Error{Op: "Get", URL: parsed.String(), Err: errors.New("dial tcp: refused")}).Error(),
		"signature " + q.Get("sig") + " did not match",
	} {
		got := r.String(msg)
		if strings.Contains(got, q.Get("sig")) || strings.Contains(got, url.QueryEscape(q.Get("sig"))) {
			t.Errorf("signature survives in %q", got)
		}
	}
	// Short parameters (ss=b) are not masked: the MinLen rule.
	if got := r.String("ss=b"); got != "ss=b" {
		t.Errorf("short value masked: %q", got)
	}
}

func TestRedactErrorKeepsKind(t *testing.T) {
	secret := "wJalrXUtnFEMI/K7MDENG+bPxRfiCY"
	r := redact.New(secret)
	base := fmt.Errorf("%w: opening bucket: %v", fault.Denied, errors.New("bad key "+url.QueryEscape(secret)))
	err := r.Error(fmt.Errorf("stage: %w", base))
	if strings.Contains(err.Error(), "wJalrX") || !strings.Contains(err.Error(), "stage: permission denied: opening bucket: bad key "+redact.Mask) {
		t.Fatalf("masked error: %q", err)
	}
	if !errors.Is(err, fault.Denied) || errors.Is(err, fault.Invalid) {
		t.Fatalf("kind lost: Is(Denied)=%v", errors.Is(err, fault.Denied))
	}
	if r.Error(nil) != nil {
		t.Fatal("nil error became non-nil")
	}
	clean := errors.New("no secret here")
	if r.Error(clean) != clean {
		t.Fatal("an error without secrets was rewrapped")
	}
	var nilR *redact.Redactor
	if nilR.String("x "+secret) != "x "+secret || nilR.Error(clean) != clean {
		t.Fatal("a nil Redactor must mask nothing")
	}
}

func TestRedactWriterMasksLogRecords(t *testing.T) {
	secrets := storeSecrets()
	all := map[string]string{}
	for kind, s := range secrets {
		for k, v := range s {
			all[kind+k] = v
		}
	}
	r := redact.FromSecrets(all)
	var buf bytes.Buffer
	for _, h := range []slog.Handler{slog.NewTextHandler(r.Writer(&buf), nil), slog.NewJSONHandler(r.Writer(&buf), nil)} {
		log := slog.New(h)
		for _, v := range all {
			log.Error("engine failed", "err", errors.New("config value "+v), "url", "https://h/?"+url.QueryEscape(v))
		}
	}
	out := buf.String()
	for k, v := range all {
		for _, part := range secretParts(v) {
			for _, p := range leakForms(part) {
				if p = strings.Trim(p, `"`); len(p) >= redact.MinLen && strings.Contains(out, p) {
					t.Errorf("%s: %q survives in the log", k, p)
				}
			}
		}
	}
	if strings.Count(out, "engine failed") != 2*len(all) {
		t.Errorf("log records lost: %q", out)
	}
}

func TestRedactValues(t *testing.T) {
	got := redact.Values(map[string]string{"a": "short", "b": "long-enough-secret", "c": ""})
	if len(got) != 1 || got[0] != "long-enough-secret" {
		t.Fatalf("Values = %q", got)
	}
	if r := redact.New(got...); r.String("x long-enough-secret") != "x "+redact.Mask {
		t.Fatal("Values do not rebuild the Redactor")
	}
}

func TestSetMasksWhileMember(t *testing.T) {
	var s redact.Set
	var buf bytes.Buffer
	w := s.Writer(&buf)
	a, b := redact.New("secret-of-copy-a"), redact.New("secret-of-copy-b")
	removeA := s.Add(a)
	removeB := s.Add(b)
	fmt.Fprint(w, "1 secret-of-copy-a secret-of-copy-b\n")
	removeA()
	fmt.Fprint(w, "2 secret-of-copy-a secret-of-copy-b\n")
	removeB()
	want := "1 [REDACTED] [REDACTED]\n2 secret-of-copy-a [REDACTED]\n"
	if buf.String() != want {
		t.Fatalf("got %q, want %q", buf.String(), want)
	}
	var nilSet *redact.Set
	nilSet.Add(a)()
	if nilSet.String("secret-of-copy-a") != "secret-of-copy-a" {
		t.Fatal("a nil Set must mask nothing")
	}
}
