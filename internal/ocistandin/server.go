// Package ocistandin is a local HTTP server speaking the subset of the OCI
// Object Storage API that bucket-csi's OCI store and rclone's
// oracleobjectstorage backend use: namespace lookup, buckets (create, head,
// get, list, delete) and objects (put, get with ranges, head, list with
// prefix/start/delimiter, delete), in memory.
//
// There is no OCI emulator. This is not a real OCI endpoint: it checks that
// each request carries an OCI signature from the expected key
// (keyId="<tenancy>/<user>/<fingerprint>") but does not verify the
// signature itself, and it implements no policies, versioning or listing
// of multipart uploads.
package ocistandin

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Server is a running stand-in.
type Server struct {
	URL       string
	Namespace string
	// KeyID is the key every request must be signed with.
	KeyID string

	srv     *httptest.Server
	mu      sync.Mutex
	buckets map[string]*bucket
	uploads map[string]*upload // by upload ID
}

// upload is a multipart upload in progress.
type upload struct {
	bucket, object string
	parts          map[int][]byte
}

type bucket struct {
	compartment string
	created     time.Time
	objects     map[string]*object
}

type object struct {
	data     []byte
	modified time.Time
}

// Start starts a stand-in on loopback accepting requests signed by keyID.
func Start(namespace, keyID string) *Server {
	s := &Server{Namespace: namespace, KeyID: keyID, buckets: map[string]*bucket{}, uploads: map[string]*upload{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

func fail(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"code": code, "message": msg})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if !strings.Contains(r.Header.Get("Authorization"), `keyId="`+s.KeyID+`"`) {
		fail(w, http.StatusUnauthorized, "NotAuthenticated", "The required information to complete authentication was not provided or was incorrect.")
		return
	}
	parts := strings.SplitN(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/", 5)
	// n / {ns} / b / {bucket} / o/{object}
	switch {
	case len(parts) >= 1 && parts[0] == "n" && (len(parts) == 1 || parts[1] == ""):
		writeJSON(w, s.Namespace)
	case len(parts) < 3 || parts[0] != "n" || parts[2] != "b":
		fail(w, http.StatusNotFound, "NotFound", "unknown path")
	case parts[1] != s.Namespace:
		fail(w, http.StatusNotFound, "NamespaceNotFound", "namespace "+parts[1])
	case len(parts) == 3 || parts[3] == "":
		s.buckets_(w, r)
	case len(parts) == 4:
		s.bucket(w, r, unescape(parts[3]))
	case len(parts) == 5 && (parts[4] == "u" || strings.HasPrefix(parts[4], "u/")):
		s.multipart(w, r, unescape(parts[3]), unescape(strings.TrimPrefix(strings.TrimPrefix(parts[4], "u"), "/")))
	case len(parts) == 5 && strings.HasPrefix(parts[4], "o"):
		name := strings.TrimPrefix(strings.TrimPrefix(parts[4], "o"), "/")
		if name == "" {
			s.list(w, r, unescape(parts[3]))
		} else {
			s.object(w, r, unescape(parts[3]), unescape(name))
		}
	default:
		fail(w, http.StatusNotFound, "NotFound", "unknown path")
	}
}

func unescape(p string) string {
	u, err := url.PathUnescape(p)
	if err != nil {
		return p
	}
	return u
}

func bucketJSON(ns, name string, b *bucket) map[string]any {
	return map[string]any{"namespace": ns, "name": name, "compartmentId": b.compartment,
		"timeCreated": b.created.Format(time.RFC3339Nano), "etag": "b-" + name, "createdBy": "standin"}
}

func (s *Server) buckets_(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.Method {
	case http.MethodPost:
		var in struct{ Name, CompartmentID string }
		body, _ := io.ReadAll(r.Body)
		var raw map[string]any
		_ = json.Unmarshal(body, &raw)
		in.Name, _ = raw["name"].(string)
		in.CompartmentID, _ = raw["compartmentId"].(string)
		if in.Name == "" {
			fail(w, http.StatusBadRequest, "InvalidParameter", "name is required")
			return
		}
		if _, ok := s.buckets[in.Name]; ok {
			fail(w, http.StatusConflict, "BucketAlreadyExists", "Either the bucket already exists or you are not authorized to create it")
			return
		}
		b := &bucket{compartment: in.CompartmentID, created: time.Now().UTC(), objects: map[string]*object{}}
		s.buckets[in.Name] = b
		writeJSON(w, bucketJSON(s.Namespace, in.Name, b))
	case http.MethodGet:
		var out []map[string]any
		names := make([]string, 0, len(s.buckets))
		for n := range s.buckets {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			if c := r.URL.Query().Get("compartmentId"); c == "" || c == s.buckets[n].compartment {
				out = append(out, bucketJSON(s.Namespace, n, s.buckets[n]))
			}
		}
		if out == nil {
			out = []map[string]any{}
		}
		writeJSON(w, out)
	default:
		fail(w, http.StatusMethodNotAllowed, "MethodNotAllowed", r.Method)
	}
}

func (s *Server) bucket(w http.ResponseWriter, r *http.Request, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.buckets[name]
	if !ok {
		fail(w, http.StatusNotFound, "BucketNotFound", "Either the bucket named '"+name+"' does not exist in the namespace '"+s.Namespace+"' or you are not authorized to access it")
		return
	}
	switch r.Method {
	case http.MethodHead:
		w.Header().Set("ETag", "b-"+name)
	case http.MethodGet:
		writeJSON(w, bucketJSON(s.Namespace, name, b))
	case http.MethodDelete:
		if len(b.objects) > 0 {
			fail(w, http.StatusConflict, "BucketNotEmpty", "Bucket named '"+name+"' is not empty")
			return
		}
		delete(s.buckets, name)
		w.WriteHeader(http.StatusNoContent)
	default:
		fail(w, http.StatusMethodNotAllowed, "MethodNotAllowed", r.Method)
	}
}

func etag(data []byte) (string, string) {
	sum := md5.Sum(data)
	return fmt.Sprintf("%x", sum), base64.StdEncoding.EncodeToString(sum[:])
}

func (s *Server) object(w http.ResponseWriter, r *http.Request, bname, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.buckets[bname]
	if !ok {
		fail(w, http.StatusNotFound, "BucketNotFound", "bucket "+bname)
		return
	}
	if r.Method == http.MethodPut {
		data, err := io.ReadAll(r.Body)
		if err != nil {
			fail(w, http.StatusBadRequest, "InvalidParameter", err.Error())
			return
		}
		b.objects[name] = &object{data: data, modified: time.Now().UTC()}
		tag, md := etag(data)
		w.Header().Set("ETag", tag)
		w.Header().Set("opc-content-md5", md)
		w.Header().Set("last-modified", b.objects[name].modified.Format(http.TimeFormat))
		return
	}
	o, ok := b.objects[name]
	if !ok {
		fail(w, http.StatusNotFound, "ObjectNotFound", "The object '"+name+"' was not found in the bucket '"+bname+"'")
		return
	}
	tag, md := etag(o.data)
	switch r.Method {
	case http.MethodDelete:
		delete(b.objects, name)
		w.WriteHeader(http.StatusNoContent)
	case http.MethodHead, http.MethodGet:
		h := w.Header()
		h.Set("ETag", tag)
		h.Set("Content-MD5", md)
		h.Set("Last-Modified", o.modified.Format(http.TimeFormat))
		h.Set("Accept-Ranges", "bytes")
		h.Set("Content-Type", "application/octet-stream")
		data, status := o.data, http.StatusOK
		if rg := r.Header.Get("Range"); rg != "" {
			start, end, ok := parseRange(rg, int64(len(o.data)))
			if !ok {
				fail(w, http.StatusRequestedRangeNotSatisfiable, "InvalidRange", rg)
				return
			}
			data, status = o.data[start:end+1], http.StatusPartialContent
			h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, len(o.data)))
		}
		h.Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(status)
		if r.Method == http.MethodGet {
			_, _ = w.Write(data)
		}
	default:
		fail(w, http.StatusMethodNotAllowed, "MethodNotAllowed", r.Method)
	}
}

// parseRange parses "bytes=a-b", "bytes=a-" and "bytes=-n".
func parseRange(h string, size int64) (int64, int64, bool) {
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok {
		return 0, 0, false
	}
	a, b, _ := strings.Cut(spec, "-")
	var start, end int64
	var err error
	switch {
	case a == "":
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil {
			return 0, 0, false
		}
		start, end = max(size-n, 0), size-1
	default:
		if start, err = strconv.ParseInt(a, 10, 64); err != nil {
			return 0, 0, false
		}
		end = size - 1
		if b != "" {
			if end, err = strconv.ParseInt(b, 10, 64); err != nil {
				return 0, 0, false
			}
		}
	}
	end = min(end, size-1)
	return start, end, start <= end && start < size
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, bname string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.buckets[bname]
	if !ok {
		fail(w, http.StatusNotFound, "BucketNotFound", "bucket "+bname)
		return
	}
	q := r.URL.Query()
	prefix, start, delim := q.Get("prefix"), q.Get("start"), q.Get("delimiter")
	limit := 1000
	if l, err := strconv.Atoi(q.Get("limit")); err == nil && l > 0 && l < limit {
		limit = l
	}
	names := make([]string, 0, len(b.objects))
	for n := range b.objects {
		if strings.HasPrefix(n, prefix) && n >= start {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	objects := []map[string]any{}
	prefixes := []string{}
	seen := map[string]bool{}
	var next *string
	for _, n := range names {
		if len(objects)+len(prefixes) >= limit {
			next = &n
			break
		}
		if delim != "" {
			if i := strings.Index(n[len(prefix):], delim); i >= 0 {
				p := n[:len(prefix)+i+len(delim)]
				if !seen[p] {
					seen[p] = true
					prefixes = append(prefixes, p)
				}
				continue
			}
		}
		o := b.objects[n]
		tag, md := etag(o.data)
		objects = append(objects, map[string]any{"name": n, "size": len(o.data), "md5": md, "etag": tag,
			"timeCreated": o.modified.Format(time.RFC3339Nano), "timeModified": o.modified.Format(time.RFC3339Nano)})
	}
	out := map[string]any{"objects": objects, "prefixes": prefixes}
	if next != nil {
		out["nextStartWith"] = *next
	}
	writeJSON(w, out)
}
