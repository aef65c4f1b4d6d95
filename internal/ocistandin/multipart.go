package ocistandin

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"time"
)

// multipart serves CreateMultipartUpload (POST .../u), UploadPart (PUT
// .../u/{object}), CommitMultipartUpload (POST .../u/{object}) and
// AbortMultipartUpload (DELETE .../u/{object}).
func (s *Server) multipart(w http.ResponseWriter, r *http.Request, bname, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.buckets[bname]
	if !ok {
		fail(w, http.StatusNotFound, "BucketNotFound", "bucket "+bname)
		return
	}
	q := r.URL.Query()
	if name == "" && r.Method == http.MethodPost {
		var in struct {
			Object string `json:"object"`
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Object == "" {
			fail(w, http.StatusBadRequest, "InvalidParameter", "object is required")
			return
		}
		id := fmt.Sprintf("upload-%d", len(s.uploads)+1) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		s.uploads[id] = &upload{bucket: bname, object: in.Object, parts: map[int][]byte{}}
		writeJSON(w, map[string]any{"namespace": s.Namespace, "bucket": bname, "object": in.Object, "uploadId": id,
			"timeCreated": time.Now().UTC().Format(time.RFC3339Nano)})
		return
	}
	u, ok := s.uploads[q.Get("uploadId")]
	if !ok || u.bucket != bname || u.object != name {
		fail(w, http.StatusNotFound, "NoSuchUpload", "upload "+q.Get("uploadId"))
		return
	}
	switch r.Method {
	case http.MethodPut:
		num, err := strconv.Atoi(q.Get("uploadPartNum"))
		data, rerr := io.ReadAll(r.Body)
		if err != nil || rerr != nil || num < 1 {
			fail(w, http.StatusBadRequest, "InvalidParameter", "bad part")
			return
		}
		u.parts[num] = data
		tag, md := etag(data)
		w.Header().Set("ETag", tag)
		w.Header().Set("opc-content-md5", md)
	case http.MethodPost:
		var in struct {
			PartsToCommit []struct {
				PartNum int    `json:"partNum"`
				Etag    string `json:"etag"`
			} `json:"partsToCommit"`
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			fail(w, http.StatusBadRequest, "InvalidParameter", err.Error())
			return
		}
		sort.Slice(in.PartsToCommit, func(i, j int) bool { return in.PartsToCommit[i].PartNum < in.PartsToCommit[j].PartNum })
		var data, sums []byte
		for _, p := range in.PartsToCommit {
			part, ok := u.parts[p.PartNum]
			if tag, _ := etag(part); !ok || tag != p.Etag {
				fail(w, http.StatusBadRequest, "InvalidPart", fmt.Sprintf("part %d", p.PartNum))
				return
			}
			data = append(data, part...)
			sum := md5.Sum(part)
			sums = append(sums, sum[:]...)
		}
		// As the service does: md5 of the parts' md5s, then "-<parts>".
		whole := md5.Sum(sums)
		w.Header().Set("opc-multipart-md5", fmt.Sprintf("%s-%d", base64.StdEncoding.EncodeToString(whole[:]), len(in.PartsToCommit)))
		b.objects[name] = &object{data: data, modified: time.Now().UTC()}
		delete(s.uploads, q.Get("uploadId"))
		tag, _ := etag(data)
		w.Header().Set("ETag", tag)
	case http.MethodDelete:
		delete(s.uploads, q.Get("uploadId"))
		w.WriteHeader(http.StatusNoContent)
	default:
		fail(w, http.StatusMethodNotAllowed, "MethodNotAllowed", r.Method)
	}
}
