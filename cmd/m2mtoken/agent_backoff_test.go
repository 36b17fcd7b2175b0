//go:build unix

package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"
)

// TestAgentProxyInvalidationsLimited is finding 5 of issue 20 against the
// binary: proxy callers whose upstream answers 401 with no challenge make
// the agent drop its token. Two hundred such calls cost one replacement
// token, not two hundred; /v1/stats shows the interval invalidations are
// held to, and the log says why they were ignored. (How the interval
// then doubles, up to an hour, over a day of 401s is
// TestInvalidationsBackOff's, on the library's fake clock.)
func TestAgentProxyInvalidationsLimited(t *testing.T) {
	needProgram(t, "curl")
	s := issuer(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
	}))
	t.Cleanup(up.Close)
	sock := filepath.Join(t.TempDir(), "agent.sock")
	p := startAgent(t, tokenEnv(s, t.TempDir()), "--listen", "unix:"+sock, "--proxy", "default=127.0.0.1:0="+up.URL)
	prx := p.addr("proxy")
	for range 200 {
		resp, err := http.Get("http://" + prx + "/x")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if n := s.TokensIssued("cli"); n != 2 {
		t.Fatalf("%d tokens for 200 calls answered 401; want the first and one replacement", n)
	}
	_, body := curl(t, "--unix-socket", sock, "http://localhost/v1/stats")
	var stats struct {
		Sources map[string]sourceStats `json:"sources"`
	}
	if err := json.Unmarshal([]byte(body), &stats); err != nil {
		t.Fatal(err)
	}
	if got := stats.Sources["default"].InvalidateBackoff; got != "30s" {
		t.Fatalf("/v1/stats invalidate_backoff %q; want 30s:\n%s", got, body)
	}
	p.waitLog("token invalidation ignored: the last one was too recent; is the API rejecting every token (wrong audience or missing grant)?", 10*time.Second)
}
