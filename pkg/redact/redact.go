// Package redact masks secret values in text that crosses a process or
// API boundary: errors of the storage engine (rclone, the store SDKs) can
// quote a request URL, a config value or a key file, and those errors reach
// gRPC messages, logs and events.
//
// A Redactor is built from a volume's secret values (the values of its
// store.Secrets). It masks every occurrence of each value and of the forms
// an engine may print it in:
//
//   - the value itself, and each line of a multi-line value (PEM keys,
//     service-account JSON), trimmed of surrounding spaces;
//   - URL query-escaped (upper- and lower-case hex) and path-escaped;
//   - base64 (standard and URL alphabets, padded and raw);
//   - JSON string-escaped (with and without HTML escaping) and Go-quoted
//     (%q, as Go errors and slog's text handler print strings), also
//     quoted twice (a quoting error logged by the text handler);
//   - for a value that is itself JSON (a service-account key), its
//     credential fields (private_key, private_key_id, client_secret, any
//     field named like a secret, token or password), each with the forms
//     above;
//   - for a value that is a URL query (an Azure SAS token), each
//     parameter value (decoded), with the forms above.
//
// Rule for many parts: every value is masked with its forms, but only the
// first MaxParts lines, fields and parameters of all values together
// (shortest values first) are masked on their own, so the patterns of a
// Redactor stay a few thousand (a secret of 64 KiB in lines of 6 bytes
// would give some 150,000).
//
// Rule for short values: a value or derived form shorter than MinLen bytes
// is not masked. Such strings are too short to be credentials and would
// mask ordinary words; store credentials are far longer.
//
// Errors keep their kind: Error wraps an error so that its message is
// masked while errors.Is and errors.As still see the original chain.
package redact

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"io"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Mask replaces every secret occurrence.
const Mask = "[REDACTED]"

// MinLen is the shortest value or derived form that is masked.
const MinLen = 6

// MaxParts is the most lines, fields and parameters of the values that a
// Redactor masks on their own (see the package comment).
const MaxParts = 1024

// Redactor masks a fixed set of secret values. The zero value and nil mask
// nothing. It is immutable and safe for concurrent use.
type Redactor struct {
	// patterns, longest first, so a whole value is masked before any of
	// its lines or parameters.
	patterns []string
}

// New returns a Redactor for values (and their forms, see the package
// comment). Values shorter than MinLen are ignored.
func New(values ...string) *Redactor {
	seen := map[string]bool{}
	var pats []string
	add := func(p string) {
		if len(p) >= MinLen && !seen[p] {
			seen[p] = true
			pats = append(pats, p)
		}
	}
	for _, v := range values {
		for _, f := range forms(v) {
			add(f)
		}
	}
	// Shortest values first (credentials are short; a long value of many
	// lines cannot take the parts of a key file after it), in a fixed
	// order, so the parts past MaxParts are the same each time.
	ordered := slices.Clone(values)
	slices.SortFunc(ordered, func(a, b string) int { return cmp.Or(len(a)-len(b), strings.Compare(a, b)) })
	parts := 0
values:
	for _, v := range ordered {
		for _, base := range derived(v)[1:] {
			if parts == MaxParts {
				break values
			}
			parts++
			for _, f := range forms(base) {
				add(f)
			}
		}
	}
	slices.SortFunc(pats, func(a, b string) int { return len(b) - len(a) })
	return &Redactor{patterns: pats}
}

// FromSecrets returns a Redactor for every value of a secret map (a
// volume's store.Secrets or the CLI's credentials of one store).
func FromSecrets(secrets map[string]string) *Redactor {
	vals := make([]string, 0, len(secrets))
	for _, v := range secrets {
		vals = append(vals, v)
	}
	return New(vals...)
}

// Values returns the secret values to pass to New in another process: the
// values of secrets that New would not ignore, sorted.
func Values(secrets map[string]string) []string {
	var out []string
	for _, v := range secrets {
		if len(v) >= MinLen {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}

// Empty reports whether r masks nothing.
func (r *Redactor) Empty() bool { return r == nil || len(r.patterns) == 0 }

// String returns s with every secret form replaced by Mask.
func (r *Redactor) String(s string) string {
	if r.Empty() {
		return s
	}
	for _, p := range r.patterns {
		if strings.Contains(s, p) {
			s = strings.ReplaceAll(s, p, Mask)
		}
	}
	return s
}

// Error returns err with its message masked. The result unwraps to err, so
// errors.Is(result, fault.X) holds exactly when it holds for err. A nil err
// stays nil; an err whose message holds no secret is returned as is.
func (r *Redactor) Error(err error) error {
	if err == nil || r.Empty() {
		return err
	}
	msg := err.Error()
	masked := r.String(msg)
	if masked == msg {
		return err
	}
	return &redacted{msg: masked, err: err}
}

// redacted is an error whose message was masked.
type redacted struct {
	msg string
	err error
}

func (e *redacted) Error() string { return e.msg }

// Unwrap keeps the error's kind visible to errors.Is and errors.As.
func (e *redacted) Unwrap() error { return e.err }

// Writer returns a writer that masks each Write before passing it to w.
// Log handlers (slog, the log package) write one whole record per Write,
// so a secret is never split across two writes.
func (r *Redactor) Writer(w io.Writer) io.Writer {
	if r.Empty() {
		return w
	}
	return &writer{r: r, w: w}
}

type writer struct {
	r *Redactor
	w io.Writer
}

func (w *writer) Write(p []byte) (int, error) {
	masked := w.r.String(string(p))
	if _, err := io.WriteString(w.w, masked); err != nil {
		return 0, err
	}
	return len(p), nil
}

// derived returns v and the secret parts of it that an engine may print
// on their own: lines, JSON credential fields, query parameter values.
func derived(v string) []string {
	out := []string{v}
	if strings.ContainsAny(v, "\r\n") {
		for _, l := range strings.FieldsFunc(v, func(r rune) bool { return r == '\n' || r == '\r' }) {
			out = append(out, strings.TrimSpace(l))
		}
	}
	var obj map[string]any
	if json.Unmarshal([]byte(v), &obj) == nil {
		for _, k := range slices.Sorted(maps.Keys(obj)) {
			s, ok := obj[k].(string)
			if !ok || !credentialField(k) {
				continue
			}
			out = append(out, s)
			for _, l := range strings.Split(s, "\n") {
				out = append(out, strings.TrimSpace(l))
			}
		}
	}
	if strings.Contains(v, "=") && !strings.ContainsAny(v, " \n{") {
		if q, err := url.ParseQuery(strings.TrimPrefix(v, "?")); err == nil {
			for _, k := range slices.Sorted(maps.Keys(q)) {
				out = append(out, q[k]...)
			}
		}
	}
	return out
}

// credentialField reports whether a JSON field of a key file holds a
// credential rather than a name or an address.
func credentialField(name string) bool {
	n := strings.ToLower(name)
	for _, w := range []string{"private_key", "secret", "password", "token", "passphrase"} {
		if strings.Contains(n, w) && !strings.HasSuffix(n, "_uri") && !strings.HasSuffix(n, "_url") {
			return true
		}
	}
	return false
}

// forms returns v as an engine may print it.
func forms(v string) []string {
	if len(v) < MinLen {
		return nil
	}
	q := url.QueryEscape(v)
	out := []string{
		v,
		q, lowerHex(q),
		url.PathEscape(v), lowerHex(url.PathEscape(v)),
		strings.ReplaceAll(q, "+", "%20"),
		base64.StdEncoding.EncodeToString([]byte(v)),
		base64.URLEncoding.EncodeToString([]byte(v)),
		base64.RawStdEncoding.EncodeToString([]byte(v)),
		base64.RawURLEncoding.EncodeToString([]byte(v)),
		unquote(strconv.Quote(v)),
		unquote(strconv.QuoteToASCII(v)),
		// Quoted twice: a Go error quoting the value, logged by slog's
		// text handler, which quotes the error again.
		unquote(strconv.Quote(unquote(strconv.Quote(v)))),
	}
	if js, err := json.Marshal(v); err == nil {
		out = append(out, unquote(string(js)))
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if enc.Encode(v) == nil {
		out = append(out, unquote(strings.TrimSuffix(buf.String(), "\n")))
	}
	return out
}

func unquote(q string) string { return strings.TrimSuffix(strings.TrimPrefix(q, `"`), `"`) }

// lowerHex lowers the hex digits of percent escapes ("%2B" -> "%2b").
func lowerHex(s string) string {
	b := []byte(s)
	for i := 0; i+2 < len(b); i++ {
		if b[i] == '%' {
			b[i+1] = lower(b[i+1])
			b[i+2] = lower(b[i+2])
		}
	}
	return string(b)
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'F' {
		return c + 'a' - 'A'
	}
	return c
}
