package m2mtoken

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"
)

func TestNewValidates(t *testing.T) {
	ok := Config{Domain: "tenant.eu.auth0.com", ClientID: "id", ClientSecret: testSecret}
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string // substring; "" means no error
	}{
		{"ok", func(*Config) {}, ""},
		{"no client id", func(c *Config) { c.ClientID = "" }, "m2mtoken: Config.ClientID is empty"},
		{"no secret", func(c *Config) { c.ClientSecret = "" }, "ClientSecret is empty"},
		{"no endpoint", func(c *Config) { c.Domain = "" }, "no endpoint"},
		{"both endpoints", func(c *Config) { c.TokenURL = "https://x/oauth/token" }, "only one"},
		{"unparsable", func(c *Config) { c.Domain = ""; c.TokenURL = "https://exa mple.com/%zz" }, "does not parse"},
		{"no host", func(c *Config) { c.Domain = ""; c.TokenURL = "https:///oauth/token" }, "no host"},
		{"no scheme", func(c *Config) { c.Domain = ""; c.TokenURL = "tenant.eu.auth0.com" }, `Config.TokenURL "tenant.eu.auth0.com" has no scheme: a token URL is a full URL, such as "https://tenant.eu.auth0.com/oauth/token"; or give the bare domain in Config.Domain`},
		{"no scheme with path", func(c *Config) { c.Domain = ""; c.TokenURL = "auth.example.com/oauth2/token" }, `did you mean "https://auth.example.com/oauth2/token"?`},
		{"no scheme loopback", func(c *Config) { c.Domain = ""; c.TokenURL = "127.0.0.1:8080/oauth/token" }, `did you mean "http://127.0.0.1:8080/oauth/token"?`},
		{"mtls no scheme", func(c *Config) { c.MTLSTokenURL = "mtls.example.com" }, `Config.MTLSTokenURL "mtls.example.com" has no scheme`},
		{"plain http", func(c *Config) { c.Domain = ""; c.TokenURL = "http://auth.example.com/oauth/token" }, "plain http"},
		{"http loopback", func(c *Config) { c.Domain = ""; c.TokenURL = "http://127.0.0.1:8080/oauth/token" }, ""},
		{"http localhost", func(c *Config) { c.Domain = "http://localhost:9000" }, ""},
		{"http ipv6 loopback", func(c *Config) { c.Domain = ""; c.TokenURL = "http://[::1]:1/token" }, ""},
		{"ftp", func(c *Config) { c.Domain = ""; c.TokenURL = "ftp://example.com/token" }, "scheme must be https"},
		{"userinfo", func(c *Config) { c.Domain = ""; c.TokenURL = "https://u:p@example.com/token" }, "credentials in it"},
		{"domain with path", func(c *Config) { c.Domain = "tenant.auth0.com/oauth/token" }, "path or query"},
		{"reserved param", func(c *Config) { c.EndpointParams = url.Values{"audience": {"x"}} }, `may not set "audience"`},
		{"negative timeout", func(c *Config) { c.FetchTimeout = -1 }, "FetchTimeout is negative"},
		{"negative attempts", func(c *Config) { c.MaxAttempts = -1 }, "MaxAttempts is negative"},
		{"bad method", func(c *Config) { c.AuthMethod = 7 }, "not supported"},
		{"jitter over 1", func(c *Config) { c.RefreshJitter = 2 }, "RefreshJitter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.mod(&cfg)
			s, err := New(cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				s.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error = %v, want it to contain %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), testSecret) {
				t.Fatalf("error reveals the secret: %v", err)
			}
		})
	}
}

func TestDomainNormalization(t *testing.T) {
	for _, d := range []string{"tenant.eu.auth0.com", "https://tenant.eu.auth0.com", "https://tenant.eu.auth0.com/", " tenant.eu.auth0.com "} {
		got, err := endpointURL(d, "")
		if err != nil {
			t.Fatalf("%q: %v", d, err)
		}
		if diff := cmp.Diff("https://tenant.eu.auth0.com/oauth/token", got); diff != "" {
			t.Errorf("%q (-want +got):\n%s", d, diff)
		}
	}
}

func TestRequestShape(t *testing.T) {
	tests := []struct {
		name       string
		mod        func(*Config)
		wantForm   url.Values
		wantBasic  bool
		wantCTJSON bool
	}{
		{
			name: "post",
			mod: func(c *Config) {
				c.Scopes = []string{"read:a", "write:b"}
				c.Organization = "org_1"
				c.EndpointParams = url.Values{"resource": {"https://r.example/"}}
			},
			wantForm: url.Values{"grant_type": {"client_credentials"}, "client_id": {"client-1"}, "client_secret": {testSecret},
				"audience": {"https://api.example.com/"}, "scope": {"read:a write:b"}, "organization": {"org_1"}, "resource": {"https://r.example/"}},
		},
		{
			name:      "basic",
			mod:       func(c *Config) { c.AuthMethod = ClientSecretBasic },
			wantForm:  url.Values{"grant_type": {"client_credentials"}, "audience": {"https://api.example.com/"}},
			wantBasic: true,
		},
		{
			name:       "json",
			mod:        func(c *Config) { c.JSONBody = true },
			wantForm:   url.Values{"grant_type": {"client_credentials"}, "client_id": {"client-1"}, "client_secret": {testSecret}, "audience": {"https://api.example.com/"}},
			wantCTJSON: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEndpoint(t)
			s, _ := testSource(t, e, tt.mod)
			if _, err := s.Token(); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantForm, e.form(0)); diff != "" {
				t.Errorf("form (-want +got):\n%s", diff)
			}
			h := e.headers[0]
			id, secret, ok := (&http.Request{Header: h}).BasicAuth()
			if ok != tt.wantBasic || (ok && (id != "client-1" || secret != testSecret)) {
				t.Errorf("basic auth = %v %q, want %v", ok, id, tt.wantBasic)
			}
			if got := h.Get("Content-Type") == "application/json"; got != tt.wantCTJSON {
				t.Errorf("content type %q", h.Get("Content-Type"))
			}
		})
	}
}

func TestTokenFields(t *testing.T) {
	e := newEndpoint(t)
	s, clk := testSource(t, e, nil)
	tok, err := s.Token()
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken != "tok-1" || tok.Type() != "Bearer" {
		t.Fatalf("token = %q %q", tok.AccessToken, tok.TokenType)
	}
	if !tok.Expiry.Equal(clk.Now().Add(100 * time.Second)) {
		t.Errorf("expiry = %v", tok.Expiry)
	}
	if got := tok.Extra("scope"); got != "read:all" {
		t.Errorf("scope extra = %v", got)
	}
	if st := s.Stats(); st.TokenRequests != 1 || !st.Expiry.Equal(tok.Expiry) {
		t.Errorf("stats = %+v", st)
	}
}

// TestFreshStaleExpired walks one token through its states on a fake clock.
// Lifetime 100 s: window min(5m, 20s) = 20 s, skew min(10s, 5s) = 5 s.
func TestFreshStaleExpired(t *testing.T) {
	e := newEndpoint(t)
	s, clk := testSource(t, e, nil)
	if _, err := s.Token(); err != nil {
		t.Fatal(err)
	}
	clk.Advance(79 * time.Second) // fresh
	if tok, _ := s.Token(); tok.AccessToken != "tok-1" || e.count() != 1 {
		t.Fatalf("fresh: got %q after %d requests", tok.AccessToken, e.count())
	}

	// Stale: the old token comes back at once while the refresh is held.
	gate := make(chan struct{})
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool { <-gate; return false })
	clk.Advance(2 * time.Second)
	for i := 0; i < 100; i++ {
		if tok, err := s.Token(); err != nil || tok.AccessToken != "tok-1" {
			t.Fatalf("stale: %v %v", tok, err)
		}
	}
	close(gate)
	waitBackground(s)
	if tok, _ := s.Token(); tok.AccessToken != "tok-2" {
		t.Fatalf("after refresh: %q", tok.AccessToken)
	}
	if st := s.Stats(); st.BackgroundRefreshes != 1 || st.TokenRequests != 2 {
		t.Fatalf("stats %+v: want one background refresh", st)
	}
}

func TestIdleSourceMakesNoRequests(t *testing.T) {
	e := newEndpoint(t)
	s, clk := testSource(t, e, nil)
	s.Token()
	for i := 0; i < 50; i++ {
		clk.Advance(time.Hour)
	}
	if e.count() != 1 {
		t.Fatalf("idle source made %d requests", e.count())
	}
	if tok, _ := s.Token(); tok.AccessToken != "tok-2" {
		t.Fatalf("after expiry: %q", tok.AccessToken)
	}
}

func TestInsideSkewWaitsForFetch(t *testing.T) {
	e := newEndpoint(t)
	s, clk := testSource(t, e, nil)
	s.Token()
	clk.Advance(96 * time.Second) // 4 s left, inside the 5 s skew
	tok, err := s.Token()
	if err != nil || tok.AccessToken != "tok-2" {
		t.Fatalf("got %v %v, want a new token", tok, err)
	}
}

// TestWindows checks the windows for lifetimes from 2 s to 30 days.
func TestWindows(t *testing.T) {
	e := newEndpoint(t)
	s, _ := testSource(t, e, nil)
	issued := startTime()
	for _, life := range []time.Duration{2 * time.Second, 10 * time.Second, time.Minute, time.Hour, 24 * time.Hour, 30 * 24 * time.Hour} {
		for _, jit := range []float64{0, 1} {
			s.rand = func() float64 { return jit }
			en := s.newEntry(&Entry{AccessToken: "x", IssuedAt: issued, Expiry: issued.Add(life)})
			fresh, stale, skew := en.staleAt.Sub(issued), en.unusableAt.Sub(en.staleAt), issued.Add(life).Sub(en.unusableAt)
			if fresh < life/3 || stale <= 0 || skew <= 0 || skew > 10*time.Second || stale+skew > 6*time.Minute+time.Second {
				t.Errorf("life %v jitter %v: fresh %v, stale %v, skew %v", life, jit, fresh, stale, skew)
			}
		}
	}
}

func TestOneRequestForManyCallers(t *testing.T) {
	e := newEndpoint(t)
	s, _ := testSource(t, e, nil)
	gate := make(chan struct{})
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool { <-gate; return false })
	const callers = 1000
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, err := s.Token()
			if err == nil && tok.AccessToken != "tok-1" {
				err = fmt.Errorf("got %q", tok.AccessToken)
			}
			errs <- err
		}()
	}
	eventually(t, "all callers to wait", func() bool { return s.joins.Load() == callers })
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if e.count() != 1 {
		t.Fatalf("%d token requests, want 1", e.count())
	}
	if st := s.Stats(); st.Collapsed != callers-1 {
		t.Fatalf("collapsed = %d, want %d", st.Collapsed, callers-1)
	}
}

func TestWaiterCancelDoesNotKillFetch(t *testing.T) {
	e := newEndpoint(t)
	s, _ := testSource(t, e, nil)
	gate := make(chan struct{})
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool { <-gate; return false })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { _, err := s.TokenContext(ctx); done <- err }()
	eventually(t, "the request to arrive", func() bool { return e.count() == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiter got %v", err)
	}
	close(gate)
	tok, err := s.Token()
	if err != nil || tok.AccessToken != "tok-1" || e.count() != 1 {
		t.Fatalf("after cancel: %v %v, %d requests", tok, err, e.count())
	}
}

func TestRetriesTemporaryFailures(t *testing.T) {
	tests := []struct {
		name      string
		fail      func(w http.ResponseWriter)
		wantSleep time.Duration // minimum of the first sleep
	}{
		{"503", func(w http.ResponseWriter) { w.WriteHeader(503) }, 0},
		{"429 retry-after seconds", func(w http.ResponseWriter) { w.Header().Set("Retry-After", "7"); w.WriteHeader(429) }, 7 * time.Second},
		{"429 retry-after date", func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", startTime().Add(30*time.Second).Format(http.TimeFormat))
			w.WriteHeader(429)
		}, 29 * time.Second},
		{"429 x-ratelimit-reset with skewed server clock", func(w http.ResponseWriter) {
			// The server's clock is an hour ahead; the reset is 12 s after its now.
			server := startTime().Add(time.Hour)
			w.Header().Set("Date", server.Format(http.TimeFormat))
			w.Header().Set("X-RateLimit-Limit", "30")
			w.Header().Set("X-RateLimit-Remaining", "0")
			w.Header().Set("X-RateLimit-Reset", fmt.Sprint(server.Add(12*time.Second).Unix()))
			w.WriteHeader(429)
		}, 12 * time.Second},
		{"truncated json", func(w http.ResponseWriter) { w.Write([]byte(`{"access_token":"tok-x","tok`)) }, 0},
		{"empty 200", func(w http.ResponseWriter) {}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEndpoint(t)
			s, clk := testSource(t, e, func(c *Config) { c.MaxAttempts = 3 })
			s.rand = func() float64 { return 0.5 }
			e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
				if n <= 2 {
					tt.fail(w)
					return true
				}
				return false
			})
			tok, err := s.Token()
			if err != nil || tok.AccessToken != "tok-3" {
				t.Fatalf("got %v %v", tok, err)
			}
			slept := clk.Slept()
			if len(slept) != 2 || slept[0] < tt.wantSleep || slept[0] > tt.wantSleep+2*time.Second {
				t.Fatalf("sleeps %v, want 2 with the first at least %v", slept, tt.wantSleep)
			}
			if st := s.Stats(); st.Failures != 2 || st.TokenRequests != 3 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestGivesUpAfterMaxAttempts(t *testing.T) {
	e := newEndpoint(t)
	s, _ := testSource(t, e, func(c *Config) { c.MaxAttempts = 3 })
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool { w.WriteHeader(502); return true })
	_, err := s.Token()
	var te *TokenError
	if !errors.As(err, &te) || te.StatusCode != 502 || !te.Temporary || e.count() != 3 {
		t.Fatalf("err %v after %d requests", err, e.count())
	}
}

func TestPermanentErrorsFailFastAndAreRemembered(t *testing.T) {
	e := newEndpoint(t)
	s, clk := testSource(t, e, nil)
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(403)
		w.Write([]byte(`{"error":"access_denied","error_description":"Service not enabled within domain: https://api.example.com/"}`))
		return true
	})
	_, err := s.Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "access_denied" || re.Response.StatusCode != 403 {
		t.Fatalf("err = %v, want a RetrieveError", err)
	}
	for _, want := range []string{"403", "access_denied", "Service not enabled"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
	for i := 0; i < 10; i++ {
		s.Token()
	}
	if e.count() != 1 {
		t.Fatalf("%d requests within the error TTL, want 1", e.count())
	}
	clk.Advance(6 * time.Second)
	s.Token()
	if e.count() != 2 {
		t.Fatalf("%d requests after the error TTL, want 2", e.count())
	}
}

func TestErrorInOK(t *testing.T) {
	e := newEndpoint(t)
	s, _ := testSource(t, e, nil)
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
		w.Write([]byte(`{"error":"invalid_client","error_description":"bad"}`))
		return true
	})
	_, err := s.Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_client" || e.count() != 1 {
		t.Fatalf("err %v after %d requests", err, e.count())
	}
}

func TestBadBodiesAreErrorsNotTokens(t *testing.T) {
	big := `{"access_token":"` + strings.Repeat("a", 2<<20) + `","token_type":"Bearer"}`
	for name, body := range map[string]string{
		"empty": "", "{}": "{}", "no token": `{"token_type":"Bearer"}`, "empty token": `{"access_token":"","token_type":"Bearer"}`,
		"mac": `{"access_token":"x","token_type":"mac"}`, "no type": `{"access_token":"x"}`, "array": `[1]`, "over 1 MiB": big,
	} {
		t.Run(name, func(t *testing.T) {
			e := newEndpoint(t)
			s, _ := testSource(t, e, func(c *Config) { c.MaxAttempts = 1 })
			e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
				w.Header().Set("Content-Type", "application/json")
				w.Write([]byte(body))
				return true
			})
			tok, err := s.Token()
			if err == nil || tok != nil {
				t.Fatalf("got token %v, want an error", tok)
			}
			if strings.Contains(err.Error(), "aaaaaaaa") {
				t.Fatalf("error quotes the body")
			}
		})
	}
}

func TestLifetimeFallbacks(t *testing.T) {
	exp := startTime().Add(2 * time.Hour).Unix()
	jwtTok := "eyJhbGciOiJub25lIn0." + b64(fmt.Sprintf(`{"exp":%d}`, exp)) + ".sig"
	tests := []struct {
		name, body string
		want       time.Duration
	}{
		{"string expires_in", `{"access_token":"a","token_type":"bearer","expires_in":"600"}`, 600 * time.Second},
		{"jwt exp", `{"access_token":"` + jwtTok + `","token_type":"Bearer"}`, 2 * time.Hour},
		{"zero expires_in uses jwt", `{"access_token":"` + jwtTok + `","token_type":"Bearer","expires_in":0}`, 2 * time.Hour},
		{"opaque without expiry", `{"access_token":"opaque","token_type":"Bearer"}`, 45 * time.Minute},
		{"absurd", `{"access_token":"a","token_type":"Bearer","expires_in":1e300}`, 366 * 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEndpoint(t)
			s, _ := testSource(t, e, func(c *Config) { c.DefaultLifetime = 45 * time.Minute })
			e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
				w.Header().Set("Content-Type", "application/json")
				w.Write([]byte(tt.body))
				return true
			})
			tok, err := s.Token()
			if err != nil {
				t.Fatal(err)
			}
			if got := tok.Expiry.Sub(startTime()); got != tt.want {
				t.Fatalf("lifetime %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFailedRefreshKeepsOldToken(t *testing.T) {
	e := newEndpoint(t)
	logs := &logBuffer{}
	s, clk := testSource(t, e, func(c *Config) { c.MaxAttempts = 1; c.Logger = logs.logger() })
	s.Token()
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool { w.WriteHeader(500); return true })
	clk.Advance(85 * time.Second) // stale
	for i := 0; i < 3; i++ {
		if tok, err := s.Token(); err != nil || tok.AccessToken != "tok-1" {
			t.Fatalf("stale with failing endpoint: %v %v", tok, err)
		}
		waitBackground(s)
	}
	// The backoff keeps a second refresh from starting at once.
	if e.count() != 2 {
		t.Fatalf("%d requests, want 2 (one failed refresh)", e.count())
	}
	if !strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("no warning logged:\n%s", logs)
	}
	clk.Advance(time.Second) // past the first backoff
	s.Token()
	waitBackground(s)
	if e.count() != 3 {
		t.Fatalf("%d requests after the backoff, want 3", e.count())
	}
	clk.Advance(15 * time.Second) // inside the skew: now the error surfaces
	if _, err := s.Token(); err == nil {
		t.Fatal("no error once the token expired")
	}
	e.setHandler(nil)
	if tok, err := s.Token(); err != nil || !strings.HasPrefix(tok.AccessToken, "tok-") {
		t.Fatalf("after recovery: %v %v", tok, err)
	}
}

func TestInvalidateIsCompareAndSwap(t *testing.T) {
	e := newEndpoint(t)
	s, clk := testSource(t, e, nil)
	tok1, _ := s.Token()
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.Invalidate(tok1)
			if tok, err := s.Token(); err != nil || tok.AccessToken == "tok-1" {
				t.Errorf("after invalidate: %v %v", tok, err)
			}
		}()
	}
	wg.Wait()
	if e.count() != 2 {
		t.Fatalf("%d requests, want 2", e.count())
	}
	// A late invalidation of the old token leaves the new one alone.
	clk.Advance(time.Minute)
	s.Invalidate(tok1)
	s.Invalidate(&oauth2.Token{AccessToken: "tok-1"})
	if tok, _ := s.Token(); tok.AccessToken != "tok-2" {
		t.Fatalf("stale invalidation dropped %q", tok.AccessToken)
	}
}

func TestInvalidateIsRateLimited(t *testing.T) {
	e := newEndpoint(t)
	s, clk := testSource(t, e, nil)
	tok1, _ := s.Token()
	s.Invalidate(tok1)
	tok2, _ := s.Token()
	s.Invalidate(tok2) // too soon: ignored
	if tok, _ := s.Token(); tok.AccessToken != tok2.AccessToken {
		t.Fatalf("second invalidation within the interval took effect")
	}
	clk.Advance(31 * time.Second)
	s.Invalidate(tok2)
	if tok, _ := s.Token(); tok.AccessToken == tok2.AccessToken {
		t.Fatalf("invalidation after the interval ignored")
	}
}

func TestRedirectsAreNotFollowed(t *testing.T) {
	var leaked int
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { leaked++ }))
	defer other.Close()
	e := newEndpoint(t)
	s, _ := testSource(t, e, nil)
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
		http.Redirect(w, r, other.URL+"/steal", http.StatusTemporaryRedirect)
		return true
	})
	_, err := s.Token()
	if err == nil || leaked != 0 || !strings.Contains(err.Error(), "not followed") {
		t.Fatalf("err %v, %d requests reached the redirect target", err, leaked)
	}
}

func TestSharedCacheAdoption(t *testing.T) {
	e := newEndpoint(t)
	cache := NewMemoryCache()
	a, clk := testSource(t, e, func(c *Config) { c.Cache = cache })
	b, err := newSource(a.cfg, clk)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.rand = a.rand
	ta, _ := a.Token()
	tb, _ := b.Token()
	if ta.AccessToken != tb.AccessToken || e.count() != 1 || b.Stats().CacheHits != 1 {
		t.Fatalf("b did not adopt a's token: %q %q, %d requests", ta.AccessToken, tb.AccessToken, e.count())
	}
	// a refreshes first; b's refresh adopts a's new token instead of asking.
	clk.Advance(85 * time.Second)
	a.Token()
	waitBackground(a)
	b.Token()
	waitBackground(b)
	if tb, _ := b.Token(); tb.AccessToken != "tok-2" || e.count() != 2 {
		t.Fatalf("b has %q after %d requests, want tok-2 after 2", tb.AccessToken, e.count())
	}
	// Every holder computes the same windows from the original lifetime.
	if a.cur.Load().staleAt != b.cur.Load().staleAt {
		t.Fatal("holders disagree on the refresh window")
	}
}

func TestInvalidatedTokenNotReadoptedFromCache(t *testing.T) {
	e := newEndpoint(t)
	s, _ := testSource(t, e, func(c *Config) { c.Cache = NewMemoryCache() })
	tok1, _ := s.Token()
	s.Invalidate(tok1)
	if tok, _ := s.Token(); tok.AccessToken == "tok-1" {
		t.Fatal("invalidated token taken back from the cache")
	}
}

func TestCacheKey(t *testing.T) {
	base := func() string {
		return cacheKey("https://t/oauth/token", "id", "aud", []string{"b", "a"}, "org", url.Values{"resource": {"r"}}, ClientSecretPost)
	}
	if base() != cacheKey("https://t/oauth/token", "id", "aud", []string{"a", "b"}, "org", url.Values{"resource": {"r"}}, ClientSecretPost) {
		t.Error("scope order changed the key")
	}
	others := []string{
		cacheKey("https://u/oauth/token", "id", "aud", []string{"a", "b"}, "org", url.Values{"resource": {"r"}}, ClientSecretPost),
		cacheKey("https://t/oauth/token", "id2", "aud", []string{"a", "b"}, "org", url.Values{"resource": {"r"}}, ClientSecretPost),
		cacheKey("https://t/oauth/token", "id", "aud2", []string{"a", "b"}, "org", url.Values{"resource": {"r"}}, ClientSecretPost),
		cacheKey("https://t/oauth/token", "id", "aud", []string{"a"}, "org", url.Values{"resource": {"r"}}, ClientSecretPost),
		cacheKey("https://t/oauth/token", "id", "aud", []string{"a", "b"}, "", url.Values{"resource": {"r"}}, ClientSecretPost),
		cacheKey("https://t/oauth/token", "id", "aud", []string{"a", "b"}, "org", nil, ClientSecretPost),
		cacheKey("https://t/oauth/token", "id", "aud", []string{"a", "b"}, "org", url.Values{"resource": {"r"}}, ClientSecretBasic),
		// Field boundaries matter: "id"+"aud" is not "ida"+"ud".
		cacheKey("https://t/oauth/token", "ida", "ud", []string{"a", "b"}, "org", url.Values{"resource": {"r"}}, ClientSecretPost),
	}
	for i, k := range others {
		if k == base() {
			t.Errorf("variant %d has the same key", i)
		}
		if strings.Contains(k, "aud") || strings.Contains(k, "id") {
			t.Errorf("key %q reveals its parts", k)
		}
	}
}

func TestCloseStopsEverything(t *testing.T) {
	e := newEndpoint(t)
	s, clk := testSource(t, e, nil)
	s.Token()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Token(); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
	if clk.Pending() != 0 {
		t.Fatalf("%d timers left after Close", clk.Pending())
	}
}

func TestFormEncodedResponse(t *testing.T) {
	e := newEndpoint(t)
	s, _ := testSource(t, e, nil)
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
		w.Header().Set("Content-Type", "application/x-www-form-urlencoded")
		w.Write([]byte("access_token=formtok&token_type=bearer&expires_in=3600&scope=a+b"))
		return true
	})
	tok, err := s.Token()
	if err != nil || tok.AccessToken != "formtok" || tok.Extra("scope") != "a b" {
		t.Fatalf("got %v %v", tok, err)
	}
}

// TestTokenThatArrivesTooLate: an answer that took most of the token's
// lifetime is an error that says so, not a token that is unusable at once.
func TestTokenThatArrivesTooLate(t *testing.T) {
	e := newEndpoint(t) // 100 s tokens
	s, clk := testSource(t, e, func(c *Config) { c.MaxAttempts = 1 })
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
		clk.Advance(97 * time.Second) // the answer takes 97 s of the 100
		return false
	})
	_, err := s.Token()
	var te *TokenError
	if !errors.As(err, &te) {
		t.Fatalf("err = %v, want a *TokenError", err)
	}
	for _, want := range []string{"had 3s left when it arrived", "expiry skew (5s)", "lifetime was 1m40s", "answer took 1m37s"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
}

// TestLateCallerMakesNoRequest: a caller that found no token, but reaches
// the flight group only after that flight installed one, gets that token
// without a token request. (Under CPU load, one of 1,000 cold-start callers
// once made a second, billed, request this way.)
func TestLateCallerMakesNoRequest(t *testing.T) {
	e := newEndpoint(t)
	s, _ := testSource(t, e, nil)
	first, err := s.Token()
	if err != nil {
		t.Fatal(err)
	}
	// What a late caller does after its load of the hot path came up empty.
	r := <-s.group.DoChan("fetch", func() (any, error) { return s.fetch(context.Background(), false) })
	if r.Err != nil || r.Val.(fetched).e.tok != first {
		t.Fatalf("late caller: %v %v, want the installed token", r.Val, r.Err)
	}
	if e.count() != 1 {
		t.Fatalf("%d token requests, want 1", e.count())
	}
}

// TestSuspendedMachine: while a laptop sleeps or a VM is paused the
// monotonic clock, and so every timer, stands still, but the token's expiry
// is wall-clock. After the pause, a fresh token is handed out for at most
// watchInterval of running time, and never from the slow path.
func TestSuspendedMachine(t *testing.T) {
	t.Run("fresh", func(t *testing.T) {
		e := newEndpoint(t) // 100 s tokens: stale at 80 s, unusable at 95 s
		s, clk := testSource(t, e, nil)
		if _, err := s.Token(); err != nil {
			t.Fatal(err)
		}
		clk.Advance(10 * time.Second)
		clk.Suspend(time.Hour) // no timer fires
		clk.Advance(watchInterval)
		tok, err := s.Token()
		if err != nil || tok.AccessToken != "tok-2" {
			t.Fatalf("%v of running time after an hour's sleep: %v %v, want tok-2", watchInterval, tok, err)
		}
	})
	t.Run("stale", func(t *testing.T) {
		e := newEndpoint(t)
		s, clk := testSource(t, e, func(c *Config) { c.MaxAttempts = 1 })
		if _, err := s.Token(); err != nil {
			t.Fatal(err)
		}
		e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool { w.WriteHeader(503); return true })
		clk.Advance(85 * time.Second) // stale; its background refresh fails
		if tok, err := s.Token(); err != nil || tok.AccessToken != "tok-1" {
			t.Fatalf("stale: %v %v", tok, err)
		}
		waitBackground(s)
		clk.Suspend(time.Hour)
		// The slow path reads the clock: the expired token is not handed
		// out, even though no timer has fired.
		if tok, err := s.Token(); err == nil {
			t.Fatalf("after an hour's sleep: %q, want an error (the endpoint is down)", tok.AccessToken)
		}
		e.setHandler(nil)
		if tok, err := s.Token(); err != nil || tok.AccessToken == "tok-1" {
			t.Fatalf("endpoint back: %v %v", tok, err)
		}
	})
}

func TestReached(t *testing.T) {
	now := time.Now() // with a monotonic reading
	for _, c := range []struct {
		name string
		t    time.Time
		want bool
	}{
		{"ahead", now.Add(time.Second), false},
		{"now", now, true},
		{"past", now.Add(-time.Second), true},
		{"ahead, wall only", now.Add(time.Second).Round(0), false},
		{"past, wall only", now.Add(-time.Second).Round(0), true},
	} {
		if got := reached(now, c.t); got != c.want {
			t.Errorf("%s: reached = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestFreshTokenOnSlowPathStartsNoRefresh: the hot path can miss a fresh
// token (while install runs); the slow path then hands it out without
// starting a refresh, and the token's own refresh still starts when it
// turns stale.
func TestFreshTokenOnSlowPathStartsNoRefresh(t *testing.T) {
	e := newEndpoint(t)
	s, clk := testSource(t, e, nil)
	if _, err := s.Token(); err != nil {
		t.Fatal(err)
	}
	s.fresh.Store(nil) // as seen between install's two stores
	if tok, err := s.Token(); err != nil || tok.AccessToken != "tok-1" {
		t.Fatalf("slow path, fresh token: %v %v", tok, err)
	}
	waitBackground(s)
	if st := s.Stats(); st.BackgroundRefreshes != 0 || e.count() != 1 {
		t.Fatalf("a fresh token started a refresh: %+v, %d requests", st, e.count())
	}
	clk.Advance(85 * time.Second) // stale
	s.Token()
	waitBackground(s)
	if tok, _ := s.Token(); tok.AccessToken != "tok-2" {
		t.Fatalf("after the stale token's refresh: %q, want tok-2", tok.AccessToken)
	}
}
