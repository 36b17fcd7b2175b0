//go:build unix

package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestProxyPathStaysUnderUpstream replays finding 7 of issue 20: the
// proxy sent GET /../admin and /%2e%2e/admin upstream as /v1/../admin, and
// an upstream that normalises paths served /admin with the agent's token.
// Every dot-segment, raw or encoded, is now refused with 400 before
// anything goes upstream, and paths without one still go through.
func TestProxyPathStaysUnderUpstream(t *testing.T) {
	s := issuer(t)
	var mu sync.Mutex
	var seen []string
	// An upstream that normalises paths, as many servers and CDNs do.
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		clean := path.Clean(strings.ReplaceAll(r.URL.Path, `\`, "/"))
		mu.Lock()
		seen = append(seen, r.RequestURI+" -> "+clean)
		mu.Unlock()
		if !strings.HasPrefix(clean, "/v1/") && r.Header.Get("Authorization") != "" {
			fmt.Fprint(w, "ADMIN with the agent's token")
			return
		}
		fmt.Fprint(w, "ok "+clean)
	}))
	t.Cleanup(up.Close)
	p := startAgent(t, tokenEnv(s, t.TempDir()), "--proxy", "default=127.0.0.1:0="+up.URL+"/v1")
	prx := p.addr("proxy")

	get := func(target string) (int, string) {
		t.Helper()
		c, err := net.DialTimeout("tcp", prx, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", target, prx)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("GET %s: %v", target, err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		bufio.NewReader(resp.Body).WriteTo(&b)
		return resp.StatusCode, b.String()
	}
	for _, target := range []string{
		"/../admin", "/%2e%2e/admin", "/%2E%2E/admin", "/.%2e/admin", "/x/../../admin",
		"/..%2fadmin", "/x/..%2F..%2Fadmin", `/..\admin`, "/..%5cadmin", "/./admin", "/%2e/admin", "/x/..",
	} {
		code, body := get(target)
		if strings.Contains(body, "ADMIN") || code != http.StatusBadRequest {
			t.Errorf("GET %s: %d %q; want 400 and nothing upstream", target, code, body)
		}
	}
	for _, target := range []string{"/items", "/items/a.b/..c/...", "/items?q=../x"} {
		if code, body := get(target); code != 200 || !strings.HasPrefix(body, "ok /v1/items") {
			t.Errorf("GET %s: %d %q; want it forwarded", target, code, body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("upstream saw: %q", seen)
}
