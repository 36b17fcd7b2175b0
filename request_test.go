package m2mtoken

// Tests of the token request (request.go): its shape, retries and backoff,
// permanent errors, and reading the answer.

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
			s.c.rand = func() float64 { return 0.5 }
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

// TestFailedFetchIsOneWarning: a fetch that fails after all its attempts
// is one warning, with the count; each retry is a debug line. A failed
// background refresh is one warning too: the refresh's, which says that
// the current token is still served.
func TestFailedFetchIsOneWarning(t *testing.T) {
	e := newEndpoint(t)
	logs := &logBuffer{}
	s, _ := testSource(t, e, func(c *Config) { c.MaxAttempts = 4; c.Logger = logs.logger() })
	tok, _ := s.Token()
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool { w.WriteHeader(503); return true })
	s.Invalidate(tok)
	if _, err := s.Token(); err == nil {
		t.Fatal("no error")
	}
	out := logs.String()
	if n := strings.Count(out, "level=WARN"); n != 1 || !strings.Contains(out, `level=WARN msg="token request failed"`) || !strings.Contains(out, "attempts=4") {
		t.Fatalf("%d warnings, want 1 with attempts=4:\n%s", n, out)
	}
	if n := strings.Count(out, `level=DEBUG msg="token request failed; retrying"`); n != 3 {
		t.Fatalf("%d retry lines at debug level, want 3:\n%s", n, out)
	}

	logs2 := &logBuffer{}
	e.setHandler(nil)
	s, clk := testSource(t, e, func(c *Config) { c.MaxAttempts = 4; c.Logger = logs2.logger() })
	s.Token()
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool { w.WriteHeader(503); return true })
	clk.Advance(85 * time.Second) // stale: a background refresh
	s.Token()
	waitBackground(s)
	out = logs2.String()
	if n := strings.Count(out, "level=WARN"); n != 1 || !strings.Contains(out, `level=WARN msg="background refresh failed; serving the current token until it expires"`) {
		t.Fatalf("%d warnings for a failed refresh, want the refresh's one:\n%s", n, out)
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

// TestWaitErrorSaysTheAttemptInFlight: a caller that gives up while this
// source's own first token request still waits for the endpoint is told
// so, not left with a bare deadline; once it is answered, the next caller
// gets the token.
func TestWaitErrorSaysTheAttemptInFlight(t *testing.T) {
	e := newEndpoint(t)
	s, clk := testSource(t, e, nil)
	sent, answer := make(chan struct{}), make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(answer) }) }
	defer release() // before the endpoint's Close, which waits for it
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
		if n == 1 {
			close(sent)
			<-answer
		}
		return false
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := s.TokenContext(ctx); done <- err }()
	<-sent
	clk.Advance(1900 * time.Millisecond)
	cancel()
	err := <-done
	var werr *WaitError
	if !errors.As(err, &werr) || werr.Attempt != 1 || werr.AttemptElapsed != 1900*time.Millisecond || werr.Last != nil || werr.Lease != nil {
		t.Fatalf("got %#v, want a WaitError with attempt 1 in flight for 1.9s", err)
	}
	if want := "m2mtoken: no token yet: context canceled; attempt 1 in flight for 1.9s"; err.Error() != want {
		t.Fatalf("got %q, want %q", err, want)
	}
	release()
	if tok, err := s.Token(); err != nil || tok.AccessToken != "tok-1" {
		t.Fatalf("after the answer: %v %v", tok, err)
	}
	if a := s.wait.sending.Load(); a != nil {
		t.Fatalf("attempt %d still marked in flight after its answer", a.n)
	}
}

// TestOversizedAnswerIsNotRetried: an answer over 1 MiB will be over it
// next time too: it fails at once, without the retries of a body cut
// short.
func TestOversizedAnswerIsNotRetried(t *testing.T) {
	e := newEndpoint(t)
	s, _ := testSource(t, e, func(c *Config) { c.MaxAttempts = 3 })
	big := `{"access_token":"` + strings.Repeat("a", 2<<20) + `","token_type":"Bearer"}`
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(big))
		return true
	})
	_, err := s.Token()
	var te *TokenError
	if !errors.As(err, &te) || te.Temporary || e.count() != 1 || !strings.Contains(err.Error(), "body over 1 MiB") {
		t.Fatalf("got %v after %d requests, want one request and a permanent 'body over 1 MiB'", err, e.count())
	}
}
