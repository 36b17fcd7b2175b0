package m2mtoken

// Tests of the bound on new tokens (newtokens.go).

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestPoolBoundsNewTokens: a pool sends at most NewTokenBurst token
// requests at once for requests it holds no token for, then NewTokenRate
// a second (on its clock); past that a new request fails at once with a
// NewTokenLimitError that says what to change, and sends nothing. The
// tokens it holds, tokens another holder left in the cache, and the
// pool's default request are served throughout.
func TestPoolBoundsNewTokens(t *testing.T) {
	e := newEndpoint(t)
	cache := NewMemoryCache()
	p, clk := testPool(t, e.URL+"/oauth/token", func(c *Config) { c.NewTokenBurst, c.NewTokenRate, c.Cache = 3, 2, cache })
	ctx := context.Background()
	for i := range int64(3) {
		if _, err := p.Token(ctx, attackerRequest(i)); err != nil {
			t.Fatal(err)
		}
	}
	_, err := p.Token(ctx, attackerRequest(3))
	var ne *NewTokenLimitError
	if !errors.As(err, &ne) || ne.RetryAfter != 500*time.Millisecond || ne.Dropping {
		t.Fatalf("the 4th new token: %v (%+v), want a NewTokenLimitError with RetryAfter 500ms", err, ne)
	}
	for _, want := range []string{"no token request sent", "Config.NewTokenBurst 3", "Config.NewTokenRate 2", "500ms", "raise Config.NewTokenRate"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q: %v", want, err)
		}
	}
	t.Logf("past the bound: %v", err)
	if n := e.count(); n != 3 {
		t.Fatalf("%d token requests, want 3", n)
	}
	// Held tokens are served; and so are tokens the cache has, which cost
	// no request.
	if _, err := p.Token(ctx, attackerRequest(0)); err != nil {
		t.Fatalf("a held token: %v", err)
	}
	p2, err := newPool(Config{TokenURL: e.URL + "/oauth/token", ClientID: "client-1", ClientSecret: testSecret, Cache: cache, NewTokenBurst: 1}, clk, true)
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	for i := range int64(3) {
		if _, err := p2.Token(ctx, attackerRequest(i)); err != nil {
			t.Fatalf("a token the cache holds: %v", err)
		}
	}
	if n := e.count(); n != 3 {
		t.Fatalf("%d token requests, want 3", n)
	}
	// Half a second later, one more.
	clk.Advance(500 * time.Millisecond)
	if _, err := p.Token(ctx, attackerRequest(3)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Token(ctx, attackerRequest(4)); !errors.As(err, &ne) {
		t.Fatalf("got %v, want a NewTokenLimitError", err)
	}
	// The pool's default request (Config's) is the service's own: never
	// refused.
	if _, err := p.Token(ctx, p.def); err != nil {
		t.Fatalf("the default request: %v", err)
	}
	if _, err := p.Token(ctx, attackerRequest(4)); !errors.As(err, &ne) {
		t.Fatalf("got %v, want a NewTokenLimitError", err)
	}
	// Through the pool's client, the call fails with it and sends nothing.
	req, _ := http.NewRequestWithContext(WithTokenRequest(ctx, attackerRequest(5)), http.MethodGet, "http://127.0.0.1:1/", nil)
	if _, err := p.Client().Do(req); !errors.As(err, &ne) {
		t.Fatalf("Client().Do: %v, want a NewTokenLimitError", err)
	}
	if n := e.count(); n != 5 {
		t.Fatalf("%d token requests, want 5", n)
	}
}

// TestPoolRefusedRequestsDropNoToken: with the pool full, a flood of
// requests the bound refuses does not drop the tokens the pool holds.
func TestPoolRefusedRequestsDropNoToken(t *testing.T) {
	e := newEndpoint(t)
	p, _ := testPool(t, e.URL+"/oauth/token", func(c *Config) { c.NewTokenBurst, c.MaxTokens = 3, 3 })
	ctx := context.Background()
	var held []*TokenSource
	for i := range int64(3) {
		s, err := p.Source(TokenRequest{Audience: "https://api/", Organization: "org_" + strconv.FormatInt(i, 10)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Token(); err != nil {
			t.Fatal(err)
		}
		held = append(held, s)
	}
	for i := range int64(1000) {
		_, err := p.Token(ctx, attackerRequest(i))
		var ne *NewTokenLimitError
		if !errors.As(err, &ne) || !ne.Dropping {
			t.Fatalf("call %d: %v, want a NewTokenLimitError that refused to make room", i, err)
		}
	}
	if st := p.Stats(); st.Evictions != 0 || st.Tokens != 3 {
		t.Fatalf("%d evictions, %d tokens: refused requests dropped held tokens", st.Evictions, st.Tokens)
	}
	for _, s := range held {
		if _, err := s.Token(); err != nil {
			t.Fatalf("a held token: %v", err)
		}
	}
	if n := e.count(); n != 3 {
		t.Fatalf("%d token requests, want 3", n)
	}
}

// TestNewTokenBoundConfig: zero means the defaults; the error names the
// field to fix; a source from New is not bound.
func TestNewTokenBoundConfig(t *testing.T) {
	e := newEndpoint(t)
	p, _ := testPool(t, e.URL+"/oauth/token", nil)
	if b, r := p.c.cfg.NewTokenBurst, p.c.cfg.NewTokenRate; b != 100 || r != 10 {
		t.Fatalf("defaults %d and %v, want 100 and 10", b, r)
	}
	if p.newTokens == nil {
		t.Fatal("a pool from NewPool has no bound on new tokens")
	}
	if p, _ := testPool(t, e.URL+"/oauth/token", func(c *Config) { c.NewTokenRate = -1 }); p.newTokens != nil {
		t.Fatal("a negative NewTokenRate leaves a bound")
	}
	if s, _ := testSource(t, e, nil); s.pool.newTokens != nil {
		t.Fatal("a source from New has a bound on new tokens")
	}
	for _, tc := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.NewTokenBurst = -1 }, "Config.NewTokenBurst is negative"},
		{func(c *Config) { c.NewTokenRate = math.NaN() }, "Config.NewTokenRate is not a number"},
	} {
		cfg := Config{TokenURL: e.URL, ClientID: "c", ClientSecret: "s"}
		tc.mod(&cfg)
		if _, err := NewPool(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
}
