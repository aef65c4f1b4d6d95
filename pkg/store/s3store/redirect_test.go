package s3store

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// TestRedirects: the Store's client follows 307 and 308 (the SDK's rule),
// returns a 301 as it is, and never sends the session token to a host
// other than the first request's, however many hops come after.
func TestRedirects(t *testing.T) {
	var mu sync.Mutex
	var tokens []string // the token each request to b arrived with
	seen := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), tokens...)
	}
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		tokens = append(tokens, r.Header.Get("X-Amz-Security-Token"))
		mu.Unlock()
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
	if got := seen(); len(got) != 2 || got[0] != "" || got[1] != "" {
		t.Fatalf("the other host got tokens %q, want none on both hops", got)
	}
	if code := get("/moved"); code != http.StatusMovedPermanently {
		t.Fatalf("301: status %d, want the 301 itself", code)
	}
	if got := seen(); len(got) != 2 {
		t.Fatalf("a 301 was followed (%d requests reached the other host)", len(got))
	}
}
