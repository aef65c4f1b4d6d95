package ocistore

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/oracle/oci-go-sdk/v65/common"
)

// TestRecordedDispatchersClosed: a token client handed to the dispatcher
// modifier (as the SDK does for an instance principal) keeps its
// connection after a request, as the SDK builds it, and closeIdle closes
// it through the SDK's certificate-refreshing wrapper.
func TestRecordedDispatchersClosed(t *testing.T) {
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "token") }))
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		switch s {
		case http.StateNew:
			open[c] = true
		case http.StateClosed, http.StateHijacked:
			delete(open, c)
		}
	}
	srv.Start()
	defer srv.Close()
	live := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(open)
	}

	d := &dispatchers{}
	c, err := d.record(&http.Client{Transport: &common.OciHTTPTransportWrapper{TLSConfigProvider: common.GetTLSConfigTemplateForTransport()}})
	if err != nil {
		t.Fatal(err)
	}
	// The metadata client the SDK builds has no transport of its own.
	if _, err := d.record(&http.Client{}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	time.Sleep(50 * time.Millisecond)
	if n := live(); n != 1 {
		t.Fatalf("%d connections open after a request, want the 1 kept alive", n)
	}
	d.closeIdle()
	deadline := time.Now().Add(5 * time.Second)
	for live() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := live(); n != 0 {
		t.Fatalf("%d connections still open after closeIdle", n)
	}
}
