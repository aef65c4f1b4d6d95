package test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// faultProxy is a reverse proxy in front of a real S3 server that answers
// GETs of some keys with an error of its own and holds GETs of others until
// released: an object the store refuses to serve, one deleted between the
// listing and the download, and a slow one.
type faultProxy struct {
	*httptest.Server
	fail map[string]int // "/bucket/key" -> HTTP status of its GET
	hold map[string]chan struct{}
	// listed are keys added to every listing of the bucket, as a store
	// that keeps any key would list them (the server's own filesystem
	// cannot hold "a//b" or a name over 255 bytes).
	listed   map[string][]string // bucket -> keys
	injected atomic.Int64        // listings that got them
}

func startFaultProxy(t *testing.T, target string, fail map[string]int, hold map[string]chan struct{}) *faultProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	p := &faultProxy{fail: fail, hold: hold}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			if status, ok := p.fail[r.URL.Path]; ok {
				code := map[int]string{403: "AccessDenied", 404: "NoSuchKey"}[status]
				w.Header().Set("Content-Type", "application/xml")
				w.WriteHeader(status)
				fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>injected</Message></Error>`, code)
				return
			}
			if ch, ok := p.hold[r.URL.Path]; ok {
				select {
				case <-ch:
				case <-r.Context().Done():
					return
				}
			}
		}
		if keys := p.listed[strings.Trim(r.URL.Path, "/")]; r.Method == http.MethodGet && keys != nil {
			rec := httptest.NewRecorder()
			rp.ServeHTTP(rec, r)
			body := rec.Body.String()
			if strings.Contains(body, "</ListBucketResult>") {
				body = injectListing(body, r.URL.Query(), keys)
				p.injected.Add(1)
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
			w.WriteHeader(rec.Code)
			_, _ = io.WriteString(w, body)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

// startDriver creates bucket on s3 and starts the driver reaching s3
// through the proxy.
func (p *faultProxy) startDriver(t *testing.T, s3 *testenv.S3, bucket string) (*testenv.Driver, testenv.Clients) {
	t.Helper()
	if err := s3.Store(t).CreateBucket(context.Background(), bucket); err != nil {
		t.Fatal(err)
	}
	through := *s3.S3
	through.Endpoint = p.URL
	drv := testenv.StartDriver(t, &testenv.S3{S3: &through})
	return drv, drv.Dial(t)
}

// injectListing adds keys to a ListObjectsV2 answer for the request's
// prefix and delimiter: a key below a delimiter becomes a common prefix.
func injectListing(body string, q url.Values, keys []string) string {
	prefix, delim := q.Get("prefix"), q.Get("delimiter")
	enc := func(k string) string {
		if q.Get("encoding-type") == "url" {
			return url.QueryEscape(k)
		}
		var b strings.Builder
		_ = xml.EscapeText(&b, []byte(k))
		return b.String()
	}
	var add strings.Builder
	seen := map[string]bool{}
	for _, k := range keys {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		if i := strings.Index(rest, delim); delim != "" && i >= 0 {
			cp := prefix + rest[:i+len(delim)]
			if !seen[cp] && !strings.Contains(body, "<Prefix>"+enc(cp)+"</Prefix></CommonPrefixes>") {
				fmt.Fprintf(&add, "<CommonPrefixes><Prefix>%s</Prefix></CommonPrefixes>", enc(cp))
			}
			seen[cp] = true
			continue
		}
		fmt.Fprintf(&add, `<Contents><Key>%s</Key><LastModified>2026-01-02T03:04:05.000Z</LastModified><ETag>"0cc175b9c0f1b6a831c399e269772661"</ETag><Size>1</Size><StorageClass>STANDARD</StorageClass></Contents>`, enc(k))
	}
	return strings.Replace(body, "</ListBucketResult>", add.String()+"</ListBucketResult>", 1)
}

// readdirAll lists dir with getdents as ls does, "." and ".." included
// when the kernel reports them, and returns the other names sorted; a
// duplicate "." or ".." counts as a name.
func readdirAll(dir string) ([]string, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var names []string
	dots := 0
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			break
		}
		_, _, more := unix.ParseDirent(buf[:n], -1, nil)
		for _, name := range more {
			names = append(names, name)
		}
		// ParseDirent drops "." and ".."; count them from the raw records.
		for off := 0; off < n; {
			reclen := int(binary.LittleEndian.Uint16(buf[off+16:]))
			name := buf[off+19 : off+reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			if string(name) == "." || string(name) == ".." {
				dots++
			}
			off += reclen
		}
	}
	if dots > 2 {
		names = append(names, fmt.Sprintf("(%d dot entries)", dots))
	}
	slices.Sort(names)
	return names, nil
}
