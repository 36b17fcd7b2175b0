package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/internal/clock"
)

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

func errorsAs(err error, target any) bool { return errors.As(err, target) }

// fakeSource hands out whatever token the test sets, and counts calls.
type fakeSource struct {
	mu    sync.Mutex
	tok   *oauth2.Token
	err   error
	calls int
	seen  chan struct{} // receives after each call
}

func (f *fakeSource) TokenContext(ctx context.Context) (*oauth2.Token, error) {
	select {
	case f.seen <- struct{}{}:
	case <-ctx.Done():
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return f.tok, f.err
}

func (f *fakeSource) Stats() m2mtoken.Stats { return m2mtoken.Stats{} }

func (f *fakeSource) set(tok *oauth2.Token, err error) {
	f.mu.Lock()
	f.tok, f.err = tok, err
	f.mu.Unlock()
}

func TestCheckInterval(t *testing.T) {
	for left, want := range map[time.Duration]time.Duration{
		24 * time.Hour: maxCheck, 2 * time.Second: 125 * time.Millisecond, 100 * time.Millisecond: minCheck, -time.Second: minCheck,
	} {
		if got := checkInterval(left); got != want {
			t.Errorf("checkInterval(%v) = %v, want %v", left, got, want)
		}
	}
}

// armingClock is a fake clock that reports each timer the watcher arms.
type armingClock struct {
	*clock.Fake
	armed chan time.Duration
}

func (c armingClock) AfterFunc(d time.Duration, f func()) clock.Timer {
	t := c.Fake.AfterFunc(d, f)
	c.armed <- d
	return t
}

// TestWatcher drives a watcher with a fake clock: it checks the source on
// the schedule checkInterval gives, delivers each new token once to the
// sinks, retries a failed delivery, and backs off while the source fails.
func TestWatcher(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := armingClock{clock.NewFake(start), make(chan time.Duration)}
	src := &fakeSource{seen: make(chan struct{})}
	src.set(&oauth2.Token{AccessToken: "one", Expiry: start.Add(160 * time.Second)}, nil)
	var mu sync.Mutex
	var delivered []string
	failNext := false
	w := newWatcher("default", src, clk, discardLog(), func(tok *oauth2.Token) error {
		mu.Lock()
		defer mu.Unlock()
		if failNext {
			failNext = false
			return errors.New("disk full")
		}
		delivered = append(delivered, tok.AccessToken)
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	// check waits for the watcher's next check and the timer it arms
	// after it, which must be want; then it lets that time pass.
	check := func(want time.Duration) {
		t.Helper()
		select {
		case <-src.seen:
		case <-time.After(10 * time.Second):
			t.Fatal("the watcher made no check")
		}
		select {
		case d := <-clk.armed:
			if d != want {
				t.Fatalf("next check in %v, want %v", d, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the watcher armed no timer")
		}
		clk.Advance(want)
	}
	check(10 * time.Second) // 160 s left: a sixteenth
	select {
	case <-w.ready:
	default:
		t.Fatal("not ready after the first token")
	}
	check(150 * time.Second / 16)

	// A new token is delivered once; a failed delivery is tried again at
	// the next check, at least a second later.
	mu.Lock()
	failNext = true
	mu.Unlock()
	tok2 := &oauth2.Token{AccessToken: "two", Expiry: start.Add(400 * time.Second)}
	src.set(tok2, nil)
	now := 10*time.Second + 150*time.Second/16
	check((400*time.Second - now) / 16)
	now += (400*time.Second - now) / 16
	check((400*time.Second - now) / 16)
	mu.Lock()
	got := strings.Join(delivered, ",")
	mu.Unlock()
	if got != "one,two" {
		t.Fatalf("delivered %q, want one,two", got)
	}
	if cur, _ := w.current(); cur != tok2 || w.seen() != 2 {
		t.Fatalf("current %v, seen %d", cur, w.seen())
	}

	// While the source fails, checks back off from a second, doubling.
	src.set(nil, errors.New("503"))
	now += (400*time.Second - now) / 16
	check(minRetry)
	check(2 * minRetry)
	if _, err := w.current(); err == nil || err.Error() != "503" {
		t.Fatalf("last error %v", err)
	}
	// The token it last saw is still reported until it expires.
	if cur, _ := w.current(); cur != tok2 {
		t.Fatalf("current %v", cur)
	}
	clk.Advance(400*time.Second - now)
	if cur, _ := w.current(); cur != nil {
		t.Fatalf("an expired token is current: %v", cur)
	}
}

func TestWriteSink(t *testing.T) {
	p := filepath.Join(t.TempDir(), "token")
	os.WriteFile(p, []byte("old"), 0o644)
	if err := writeSinks([]string{p}, &oauth2.Token{AccessToken: "abc.def"}, -1); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	info, _ := os.Stat(p)
	if string(b) != "abc.def" || info.Mode().Perm() != 0o600 {
		t.Fatalf("%q %v", b, info.Mode())
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
	if err := writeSinks([]string{filepath.Join(t.TempDir(), "gone", "token")}, &oauth2.Token{AccessToken: "x"}, -1); err == nil || !strings.Contains(err.Error(), "sink ") {
		t.Fatalf("error %v", err)
	}
}

// TestRefusal: the SSRF and DNS rebinding guards of TCP listeners.
func TestRefusal(t *testing.T) {
	for _, tc := range []struct {
		name    string
		host    string
		headers map[string]string
		header  bool
		want    string
	}{
		{"ok", "127.0.0.1:8080", map[string]string{agentHeader: "1"}, true, ""},
		{"ok localhost", "localhost:8080", map[string]string{agentHeader: "1"}, true, ""},
		{"ok ipv6", "[::1]:8080", map[string]string{agentHeader: "1"}, true, ""},
		{"ok proxy without header", "127.0.0.1:9000", nil, false, ""},
		{"no header", "127.0.0.1:8080", nil, true, agentHeader},
		{"header not 1", "127.0.0.1:8080", map[string]string{agentHeader: "true"}, true, agentHeader},
		{"rebinding", "evil.example:8080", map[string]string{agentHeader: "1"}, true, "not a loopback"},
		{"rebinding on the proxy", "evil.example:9000", nil, false, "not a loopback"},
		{"lan host", "10.0.0.1:8080", map[string]string{agentHeader: "1"}, true, "not a loopback"},
		{"no host", "", map[string]string{agentHeader: "1"}, true, "not a loopback"},
		{"origin", "127.0.0.1:8080", map[string]string{agentHeader: "1", "Origin": "https://evil.example"}, true, "browser"},
		{"null origin", "127.0.0.1:8080", map[string]string{"Origin": "null"}, false, "browser"},
		{"fetch metadata", "127.0.0.1:8080", map[string]string{"Sec-Fetch-Site": "cross-site"}, false, "browser"},
		{"forwarded", "127.0.0.1:8080", map[string]string{agentHeader: "1", "X-Forwarded-For": "1.2.3.4"}, true, "forwarded"},
		{"forwarded rfc7239", "127.0.0.1:8080", map[string]string{agentHeader: "1", "Forwarded": "for=1.2.3.4"}, true, "forwarded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/v1/token/default", nil)
			r.Host = tc.host
			for k, v := range tc.headers {
				r.Header.Set(k, v)
			}
			got := refusal(r, tc.header)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("refusal %q, want %q", got, tc.want)
			}
		})
	}
}

// TestAgentHandlers runs the endpoint in process against a test issuer.
func TestAgentHandlers(t *testing.T) {
	s := issuer(t)
	spec := sourceSpec{name: "default", cfg: m2mtoken.Config{TokenURL: s.TokenURL(), ClientID: "cli", ClientSecret: secret, Audience: aud}}
	a, err := newAgent([]sourceSpec{spec}, []string{"127.0.0.1:0"}, nil, nil, "", discardLog())
	if err != nil {
		t.Fatal(err)
	}
	defer a.closeSources()
	a.started = time.Now()
	srv := httptest.NewServer(a.guard(true, a.endpoint()))
	defer srv.Close()
	get := func(path string, hdr bool) (int, string) {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if hdr {
			req.Header.Set(agentHeader, "1")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz", true); code != 503 || !strings.Contains(body, `"ready":false`) {
		t.Fatalf("healthz before a token: %d %s", code, body)
	}
	code, body := get("/v1/token/default", true)
	if code != 200 || !strings.Contains(body, `"token_type":"Bearer"`) || !strings.Contains(body, `"expires_in":86`) {
		t.Fatalf("token: %d %s", code, body)
	}
	code, body = get("/v1/token/default?url=https://api.example.com/x%3Fa%3Db&method=post", true)
	var ans tokenAnswer
	if code != 200 || json.Unmarshal([]byte(body), &ans) != nil || ans.Headers["Authorization"] != "Bearer "+ans.AccessToken {
		t.Fatalf("token with url: %d %s", code, body)
	}
	for q, want := range map[string]string{"?method=GET": "method goes with url", "?url=/relative": "absolute", "?url=ftp://x/": "absolute"} {
		if code, body := get("/v1/token/default"+q, true); code != 400 || !strings.Contains(body, want) {
			t.Errorf("%s: %d %s", q, code, body)
		}
	}
	if code, _ := get("/v1/token/default", false); code != 403 {
		t.Fatalf("without the header: %d", code)
	}
	if code, body := get("/v1/token/nope", true); code != 404 || !strings.Contains(body, `no source named \"nope\"`) {
		t.Fatalf("unknown source: %d %s", code, body)
	}
	if code, _ := get("/v2/other", true); code != 404 {
		t.Fatalf("unknown path: %d", code)
	}
	req, _ := http.NewRequest("POST", srv.URL+"/v1/token/default", nil)
	req.Header.Set(agentHeader, "1")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 405 {
		t.Fatalf("POST: %v %v", resp.StatusCode, err)
	}
	code, body = get("/v1/stats", true)
	if code != 200 || !strings.Contains(body, `"token_requests":1`) || !strings.Contains(body, `"refused":1`) || strings.Contains(body, secret) {
		t.Fatalf("stats: %d %s", code, body)
	}
}

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
	spec := sourceSpec{name: "default", cfg: m2mtoken.Config{TokenURL: s.TokenURL(), ClientID: "cli", ClientSecret: secret, Audience: aud,
		MinInvalidateInterval: -1}}
	a, err := newAgent([]sourceSpec{spec}, nil, nil, []string{"default=127.0.0.1:0=" + api.URL}, "", discardLog())
	if err != nil {
		t.Fatal(err)
	}
	defer a.closeSources()
	prx := httptest.NewServer(a.guard(false, a.proxies[0].handler))
	defer prx.Close()
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
		resp, err := http.Post(prx.URL+"/x", "text/plain", strings.NewReader(body))
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
	resp, err := http.Get(prx.URL + "/x")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET after a revocation: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	if n := s.TokensIssued("cli"); n != 3 {
		t.Fatalf("%d tokens issued, want 3", n)
	}
}

// TestAgentHealthSaysWhy: with a wrong secret, /healthz is 503 and says
// what the token endpoint answered, without the secret.
func TestAgentHealthSaysWhy(t *testing.T) {
	s := issuer(t)
	spec := sourceSpec{name: "default", cfg: m2mtoken.Config{TokenURL: s.TokenURL(), ClientID: "cli", ClientSecret: "wrong-" + secret, Audience: aud}}
	a, err := newAgent([]sourceSpec{spec}, []string{"127.0.0.1:0"}, nil, nil, "", discardLog())
	if err != nil {
		t.Fatal(err)
	}
	defer a.closeSources()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.sources[0].w.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := a.sources[0].w.current(); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the watcher recorded no error")
		}
	}
	rec := httptest.NewRecorder()
	a.endpoint().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	body := rec.Body.String()
	if rec.Code != 503 || !strings.Contains(body, "401") || !strings.Contains(body, `"ready":false`) || strings.Contains(body, secret) {
		t.Fatalf("healthz: %d %s", rec.Code, body)
	}
}
