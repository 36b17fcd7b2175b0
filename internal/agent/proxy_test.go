// The egress proxy: recovery from a revoked token, the bound on
// invalidations, the path boundary.

package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestProxyRecoversFromRevokedToken: the proxy replaces a token the API
// refuses (401 invalid_token) and replays the request, body included when
// it is small enough to keep; a larger body's 401 reaches the client.
func TestProxyRecoversFromRevokedToken(t *testing.T) {
	s := issuer(t)
	var mu sync.Mutex
	revoked := map[string]bool{}
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		mu.Lock()
		bad := revoked[tok]
		mu.Unlock()
		if _, err := s.Verify(tok, aud); err != nil || bad {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}))
	defer api.Close()
	src := source(s)
	src.Config.MinInvalidateInterval = -1
	a := launchAgent(t, Config{Sources: []Source{src}, Proxies: []Proxy{{Source: "default", Listen: "127.0.0.1:0", Upstream: api.URL}}})
	prx, c := "http://"+a.proxy(0), client(t, "")
	revoke := func() {
		tok, err := a.sources[0].src.TokenContext(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		revoked[tok.AccessToken] = true
		mu.Unlock()
	}
	post := func(body string) (int, string) {
		resp, err := c.Post(prx+"/x", "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	revoke()
	if code, body := post("small body"); code != 200 || body != "small body" {
		t.Fatalf("after a revocation: %d %q", code, body)
	}
	if n := s.TokensIssued("cli"); n != 2 {
		t.Fatalf("%d tokens issued, want 2", n)
	}
	// A body too large to keep cannot be replayed: the client gets the
	// API's 401. A request without a body, next, recovers.
	revoke()
	if code, _ := post(strings.Repeat("x", maxReplayBody+1)); code != 401 {
		t.Fatalf("large body after a revocation: %d, want the API's 401", code)
	}
	resp, err := c.Get(prx + "/x")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET after a revocation: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	if n := s.TokensIssued("cli"); n != 3 {
		t.Fatalf("%d tokens issued, want 3", n)
	}
}

// TestAgentProxyInvalidationsLimited: local callers of the proxy whose
// upstream answers 401 with no challenge make the agent drop its token,
// to burn M2M tokens. Two hundred such calls must cost one replacement
// token, not two hundred; /v1/stats shows the interval invalidations are
// held to, and the log says why they were ignored. (How the interval then
// doubles, up to an hour, over a day of 401s is
// TestInvalidationsBackOff's, on the library's fake clock.)
func TestAgentProxyInvalidationsLimited(t *testing.T) {
	s := issuer(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
	}))
	t.Cleanup(up.Close)
	sock := filepath.Join(t.TempDir(), "agent.sock")
	a := startAgent(t, Config{Sources: []Source{source(s)}, Listeners: []Listener{{"unix:" + sock}}, Proxies: []Proxy{{Source: "default", Listen: "127.0.0.1:0", Upstream: up.URL}}})
	c := client(t, "")
	for range 200 {
		if code, _ := get(t, c, "http://"+a.proxy(0)+"/x"); code != 401 {
			t.Fatalf("through the proxy: %d, want the upstream's 401", code)
		}
	}
	if n := s.TokensIssued("cli"); n != 2 {
		t.Fatalf("%d tokens for 200 calls answered 401; want the first and one replacement", n)
	}
	_, body := get(t, client(t, sock), "http://localhost/v1/stats")
	var stats struct {
		Sources map[string]sourceStats `json:"sources"`
	}
	if err := json.Unmarshal([]byte(body), &stats); err != nil {
		t.Fatal(err)
	}
	if got := stats.Sources["default"].InvalidateBackoff; got != "30s" {
		t.Fatalf("/v1/stats invalidate_backoff %q; want 30s:\n%s", got, body)
	}
	a.waitLog(1, "token invalidation ignored: the last one was too recent; is the API rejecting every token (wrong audience or missing grant)?")
}

// TestProxyPathStaysUnderUpstream: a local caller sends GET /../admin or
// /%2e%2e/admin through a proxy whose upstream is .../v1, so that an
// upstream that normalises paths serves /admin with the agent's token.
// Every dot-segment, raw or encoded, must be refused with 400 before
// anything goes upstream, and paths without one still go through.
func TestProxyPathStaysUnderUpstream(t *testing.T) {
	// An upstream that normalises paths, as many servers and CDNs do.
	proxyPaths(t, "/v1", func(r *http.Request) string { return path.Clean(strings.ReplaceAll(r.URL.Path, `\`, "/")) },
		[]string{
			"/../admin", "/%2e%2e/admin", "/%2E%2E/admin", "/.%2e/admin", "/x/../../admin",
			"/..%2fadmin", "/x/..%2F..%2Fadmin", `/..\admin`, "/..%5cadmin", "/./admin", "/%2e/admin", "/x/..",
		},
		[]string{"/items", "/items/a.b/..c/...", "/items?q=../x"})
}

// proxyPaths runs a proxy to an upstream at the path under, which
// resolves each request's path with normalise and answers "ESCAPED to
// PATH" when that path, asked with a token, is not below under. Each of
// refused must get 400 and send nothing upstream; each of forwarded must
// reach the upstream below under.
func proxyPaths(t *testing.T, under string, normalise func(*http.Request) string, refused, forwarded []string) {
	t.Helper()
	s := issuer(t)
	var mu sync.Mutex
	var seen []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		clean := normalise(r)
		mu.Lock()
		seen = append(seen, r.RequestURI+" -> "+clean)
		mu.Unlock()
		if !strings.HasPrefix(clean, under+"/") && r.Header.Get("Authorization") != "" {
			fmt.Fprint(w, "ESCAPED to "+clean+" with the agent's token")
			return
		}
		fmt.Fprint(w, "ok "+clean)
	}))
	t.Cleanup(up.Close)
	a := startAgent(t, Config{Sources: []Source{source(s)}, Proxies: []Proxy{{Source: "default", Listen: "127.0.0.1:0", Upstream: up.URL + under}}})
	prx := a.proxy(0)
	for _, target := range refused {
		code, body := rawGet(t, prx, "GET", target)
		if strings.Contains(body, "ESCAPED") || code != http.StatusBadRequest {
			t.Errorf("GET %s: %d %q; want 400 and nothing upstream", target, code, body)
		}
	}
	for _, target := range forwarded {
		if code, body := rawGet(t, prx, "GET", target); code != 200 || !strings.HasPrefix(body, "ok "+under+"/") {
			t.Errorf("GET %s: %d %q; want it forwarded", target, code, body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("upstream saw: %q", seen)
}

// TestProxyUpstreamLocalhostAnyCase: a loopback name is one in any case;
// only a near miss of it is called a typo.
func TestProxyUpstreamLocalhostAnyCase(t *testing.T) {
	for _, up := range []string{"http://LocalHost:8080", "http://LOCALHOST:8080/api", "http://localhost:8080"} {
		if _, err := checkProxy(Proxy{Source: "default", Listen: "127.0.0.1:0", Upstream: up}); err != nil {
			t.Errorf("%s: %v", up, err)
		}
	}
	if _, err := checkProxy(Proxy{Source: "default", Listen: "127.0.0.1:0", Upstream: "http://locahost:8080"}); err == nil || !strings.Contains(err.Error(), "did you mean localhost?") {
		t.Errorf("locahost: %v", err)
	}
}

// laxNormalise is what a lax server behind the proxy makes of a path, all
// its quirks at once: it decodes percent-escapes twice, reads overlong
// UTF-8 (%c0%ae) and fullwidth or leader dots as dots (Unicode NFKC),
// ends the path at a NUL byte (C), drops each segment's ";parameters"
// (Tomcat, Spring) and trailing spaces (Windows), takes backslashes for
// slashes, and then resolves dot-segments.
func laxNormalise(escaped string) string {
	p := escaped
	for range 2 {
		if u, err := url.PathUnescape(p); err == nil {
			p = u
		}
	}
	p = strings.NewReplacer("\xc0\xae", ".", "\xe0\x80\xae", ".", "\xc0\xaf", "/", "\uff0e", ".", "\uff0f", "/", "\u2025", "..", "\ufe52", ".").Replace(p)
	p, _, _ = strings.Cut(p, "\x00")
	segs := strings.Split(strings.ReplaceAll(p, `\`, "/"), "/")
	for i, s := range segs {
		s, _, _ = strings.Cut(s, ";")
		segs[i] = strings.TrimRight(s, " ")
	}
	return path.Clean("/" + strings.Join(segs, "/"))
}

// TestProxyPathTricks replays dot-segments that a lax upstream reads as
// such: Tomcat and Spring Boot drop ";parameters" before normalising, so
// that /v1/tenants/42/..;/43/secrets would serve /v1/tenants/43/secrets
// with the agent's token; so would fullwidth dots (%EF%BC%8E), overlong
// UTF-8 (%c0%ae) and "..%00" at servers that read them as dots. Each must
// be refused with 400 before anything goes upstream, and paths that only
// look alike (matrix parameters, an ellipsis, a yen sign, dotted names)
// still go through.
func TestProxyPathTricks(t *testing.T) {
	proxyPaths(t, "/v1/tenants/42", func(r *http.Request) string { return laxNormalise(r.URL.EscapedPath()) },
		[]string{
			"/..;/43/secrets", "/..;x/..;y/admin/users", "/.;/x", "/x/..;jsessionid=1/..;/43", "/%2e%2e;/43", "/..%3b/43", "/..%3B%2F43",
			"/%EF%BC%8E%EF%BC%8E/43", "/%EF%BC%8E%EF%BC%8E%EF%BC%8F43", "/%E2%80%A5/43", "/%EF%B9%92%EF%B9%92/43", "/%25EF%25BC%258E%25EF%25BC%258E/43",
			"/%c0%ae%c0%ae/43", "/%C0%AE%C0%AE%C0%AF43", "/%e0%80%ae%e0%80%ae/43", "/..%c0%af43",
			"/..%00/43", "/..%00.json/43", "/x%00/43", "/%2e%2e%2500/43", "/..%20/43", "/..%09/43",
		},
		[]string{
			"/items", "/cars;color=red/x", "/a/.hidden/..b/c..", "/files/na%C3%AFve", "/files/%E2%80%A6", "/prices/%C2%A5100",
			"/%EF%BC%8Ex", "/a;b/c", "/%3B/x",
		})
}

// FuzzProxyPath: a path the guard lets through stays under the
// upstream's path at the lax server of laxNormalise, whatever its bytes.
func FuzzProxyPath(f *testing.F) {
	for _, p := range []string{"/items", "/..;/43", "/%EF%BC%8E%EF%BC%8E/x", "/%c0%ae%c0%ae/x", "/..%00/x", "/a;b/c", "/%252e%252e/x", `/..\x`} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		u, err := url.ParseRequestURI(p)
		if err != nil || !strings.HasPrefix(p, "/") || u.RawQuery != "" || u.Fragment != "" {
			return
		}
		r := &http.Request{URL: u}
		if hasDotSegment(r) {
			return
		}
		const base = "/v1/tenants/42"
		if got := laxNormalise(base + u.EscapedPath()); got != base && !strings.HasPrefix(got, base+"/") {
			t.Fatalf("%q passed the guard, and a lax server reads it as %q", p, got)
		}
	})
}

// TestProxySSRF replays a local SSRF through the proxy: a server that
// fetches URLs for its users (a link preview, GET only, no header of the
// attacker's) reads anything under the upstream's path with the agent's
// token from a proxy on TCP. With the required header, the proxy refuses
// it (403) before anything goes upstream, while a client that sends the
// header is served and the header never reaches the upstream; a proxy on
// a Unix socket (mode 0600, 0660 for its group) cannot be named by a URL.
func TestProxySSRF(t *testing.T) {
	s := issuer(t)
	var mu sync.Mutex
	var upstreamSaw []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		upstreamSaw = append(upstreamSaw, fmt.Sprintf("%s auth=%v agent-header=%q", r.URL.Path, r.Header.Get("Authorization") != "", r.Header.Get(agentHeader)))
		mu.Unlock()
		fmt.Fprint(w, "the tenant's secrets")
	}))
	t.Cleanup(up.Close)
	// The server an attacker can make fetch URLs, GET only.
	fetcher := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.Get(r.URL.Query().Get("url"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		fmt.Fprintf(w, "%d %s", resp.StatusCode, b)
	}))
	t.Cleanup(fetcher.Close)
	sock := filepath.Join(t.TempDir(), "api.sock")
	a := startAgent(t, Config{Sources: []Source{source(s)}, Proxies: []Proxy{
		{Source: "default", Listen: "127.0.0.1:0", Upstream: up.URL},
		{Source: "default", Listen: "127.0.0.1:0", Upstream: up.URL, RequireHeader: true},
		{Source: "default", Listen: "unix:" + sock, Upstream: up.URL},
	}})
	c := client(t, "")
	ssrf := func(target string) string {
		_, body := get(t, c, fetcher.URL+"/preview?url="+url.QueryEscape(target))
		return body
	}
	if got := ssrf("http://" + a.proxy(0) + "/v1/secrets"); got != "200 the tenant's secrets" {
		t.Fatalf("without the header, the SSRF got %q (the default keeps clients unchanged, and lets it through)", got)
	}
	mu.Lock()
	before := len(upstreamSaw)
	mu.Unlock()
	if got := ssrf("http://" + a.proxy(1) + "/v1/secrets"); !strings.HasPrefix(got, "403 ") || !strings.Contains(got, "M2MToken-Agent: 1") {
		t.Fatalf("with the required header, the SSRF got %q; want 403", got)
	}
	mu.Lock()
	if len(upstreamSaw) != before {
		t.Fatalf("the refused request reached the upstream: %q", upstreamSaw[before:])
	}
	mu.Unlock()
	if code, body := get(t, c, "http://"+a.proxy(1)+"/v1/secrets", agentHeader, "1"); code != 200 || body != "the tenant's secrets" {
		t.Fatalf("a client with the header: %d %q", code, body)
	}
	if code, body := get(t, c, "http://"+a.proxy(1)+"/v1/secrets", agentHeader, "yes"); code != 403 {
		t.Fatalf("a header with another value: %d %q; want 403", code, body)
	}
	if code, body := get(t, client(t, sock), "http://localhost/v1/secrets"); code != 200 || body != "the tenant's secrets" {
		t.Fatalf("over the proxy's socket: %d %q", code, body)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the proxy's socket: %v %v", fi.Mode(), err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, l := range upstreamSaw {
		if !strings.HasSuffix(l, `agent-header=""`) || !strings.Contains(l, "auth=true") {
			t.Errorf("the upstream saw %s: the header must never be forwarded, the token always", l)
		}
	}
	t.Logf("upstream saw: %q", upstreamSaw)
}
