package s3store

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestRedirects: the Store's client follows 307 and 308 (the SDK's rule),
// returns a 301 as it is, and never sends the session token to a host
// other than the first request's, however many hops come after.
func TestRedirects(t *testing.T) {
	var tokens []string // the token each request to b arrived with
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tokens = append(tokens, r.Header.Get("X-Amz-Security-Token"))
		if r.URL.Path == "/first" {
			http.Redirect(w, r, "/second", http.StatusPermanentRedirect)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer b.Close()
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/moved":
			http.Redirect(w, r, b.URL+"/second", http.StatusMovedPermanently)
		default:
			http.Redirect(w, r, b.URL+"/first", http.StatusTemporaryRedirect)
		}
	}))
	defer a.Close()
	hc, tr := newHTTPClient()
	defer tr.CloseIdleConnections()

	get := func(path string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, a.URL+path, nil)
		req.Header.Set("X-Amz-Security-Token", "session-token")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("/start"); code != http.StatusNoContent {
		t.Fatalf("307 then 308: status %d, want 204 from the last hop", code)
	}
	if len(tokens) != 2 || tokens[0] != "" || tokens[1] != "" {
		t.Fatalf("the other host got tokens %q, want none on both hops", tokens)
	}
	if code := get("/moved"); code != http.StatusMovedPermanently {
		t.Fatalf("301: status %d, want the 301 itself", code)
	}
	if len(tokens) != 2 {
		t.Fatalf("a 301 was followed (%d requests reached the other host)", len(tokens))
	}
}
