package m2mtoken

import (
	"context"
	"crypto/elliptic"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/m2mtoken/m2mtoken/internal/clock"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// testPool returns a pool on a fake clock talking to e.
func testPool(t testing.TB, tokenURL string, mod func(*Config)) (*Pool, *clock.Fake) {
	t.Helper()
	clk := clock.NewFake(startTime())
	cfg := Config{TokenURL: tokenURL, ClientID: "client-1", ClientSecret: testSecret, Audience: "https://api.example.com/"}
	if mod != nil {
		mod(&cfg)
	}
	p, err := newPool(cfg, clk, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, clk
}

func TestPoolSourceIsOnePerRequest(t *testing.T) {
	e := newEndpoint(t)
	p, _ := testPool(t, e.URL+"/oauth/token", nil)
	base := TokenRequest{Audience: "a", Scopes: []string{"read", "write"}, Organization: "org_1", Params: url.Values{"resource": {"r"}, "x": {"1", "2"}}}
	s, err := p.Source(base)
	if err != nil {
		t.Fatal(err)
	}
	same := []TokenRequest{
		{Audience: "a", Scopes: []string{"write", "read"}, Organization: "org_1", Params: url.Values{"x": {"1", "2"}, "resource": {"r"}}},
		{Audience: "a", Scopes: []string{"read", "write", "read"}, Organization: "org_1", Params: url.Values{"resource": {"r"}, "x": {"1", "2"}, "empty": nil}},
	}
	for _, r := range same {
		if got, _ := p.Source(r); got != s {
			t.Errorf("Source(%+v) is another source than for %+v", r, base)
		}
	}
	differ := []TokenRequest{
		{Audience: "b", Scopes: []string{"read", "write"}, Organization: "org_1", Params: url.Values{"resource": {"r"}, "x": {"1", "2"}}},
		{Audience: "a", Scopes: []string{"read"}, Organization: "org_1", Params: url.Values{"resource": {"r"}, "x": {"1", "2"}}},
		{Audience: "a", Scopes: []string{"read", "write"}, Organization: "org_2", Params: url.Values{"resource": {"r"}, "x": {"1", "2"}}},
		{Audience: "a", Scopes: []string{"read", "write"}, Params: url.Values{"resource": {"r"}, "x": {"1", "2"}}},
		{Audience: "a", Scopes: []string{"read", "write"}, Organization: "org_1", Params: url.Values{"resource": {"r2"}, "x": {"1", "2"}}},
		{Audience: "a", Scopes: []string{"read", "write"}, Organization: "org_1", Params: url.Values{"resource": {"r"}, "x": {"2", "1"}}},
		{Audience: "a", Scopes: []string{"read", "write"}, Organization: "org_1", Params: url.Values{"resource": {"r"}}},
		// Fields that run into each other must not collide.
		{Audience: "aorg_1", Scopes: []string{"read", "write"}, Params: url.Values{"resource": {"r"}, "x": {"1", "2"}}},
	}
	seen := map[*TokenSource]TokenRequest{s: base}
	for _, r := range differ {
		got, err := p.Source(r)
		if err != nil {
			t.Fatal(err)
		}
		if prev, ok := seen[got]; ok {
			t.Errorf("Source(%+v) is the source of %+v", r, prev)
		}
		seen[got] = r
		if got.CacheKey() == s.CacheKey() {
			t.Errorf("%+v has the cache key of %+v", r, base)
		}
	}
	// The caller's slices and maps are copied: changing them later changes
	// nothing.
	base.Scopes[0], base.Params["resource"][0] = "admin", "other"
	if got := s.Request(); got.Scopes[0] != "read" || got.Params["resource"][0] != "r" {
		t.Errorf("the source's request changed with the caller's: %+v", got)
	}
	if st := p.Stats(); st.Tokens != 1+len(differ) {
		t.Errorf("Stats().Tokens = %d, want %d", st.Tokens, 1+len(differ))
	}
}

func TestPoolRefusesParamsTheClientSets(t *testing.T) {
	e := newEndpoint(t)
	p, _ := testPool(t, e.URL+"/oauth/token", nil)
	for _, name := range []string{"grant_type", "client_id", "client_secret", "client_assertion", "client_assertion_type", "audience", "scope", "organization"} {
		_, err := p.Source(TokenRequest{Audience: "a", Params: url.Values{name: {"x"}}})
		if err == nil || !strings.Contains(err.Error(), `"`+name+`"`) {
			t.Errorf("Params[%q]: got %v, want an error naming it", name, err)
		}
		if _, err := p.Token(context.Background(), TokenRequest{Audience: "a", Params: url.Values{name: {"x"}}}); err == nil {
			t.Errorf("Token with Params[%q] succeeded", name)
		}
	}
	if e.count() != 0 {
		t.Fatalf("%d token requests for refused requests", e.count())
	}
}

// TestReservedParamsOneListOneMessage: Config.EndpointParams and
// TokenRequest.Params are checked against one list, with one message in
// each one's words: a client_assertion* name in EndpointParams is refused
// naming EndpointParams, not TokenRequest.Params.
func TestReservedParamsOneListOneMessage(t *testing.T) {
	e := newEndpoint(t)
	p, _ := testPool(t, e.URL+"/oauth/token", nil)
	for name, want := range map[string]string{
		"client_assertion_x": `m2mtoken: Config.EndpointParams may not set "client_assertion_x": the client sends it itself (grant_type, client_id, client_secret and client_assertion* are its own)`,
		"client_id":          `m2mtoken: Config.EndpointParams may not set "client_id": the client sends it itself (grant_type, client_id, client_secret and client_assertion* are its own)`,
		"audience":           `m2mtoken: Config.EndpointParams may not set "audience": set it with Config.Audience`,
		"scope":              `m2mtoken: Config.EndpointParams may not set "scope": set it with Config.Scopes`,
		"organization":       `m2mtoken: Config.EndpointParams may not set "organization": set it with Config.Organization`,
	} {
		_, err := New(Config{TokenURL: e.URL + "/oauth/token", ClientID: "c", ClientSecret: "s", EndpointParams: url.Values{name: {"x"}}})
		var ce *ConfigError
		if !errors.As(err, &ce) || err.Error() != want || ce.Fields[0] != "EndpointParams" {
			t.Errorf("EndpointParams[%q]:\n got %v\nwant %s", name, err, want)
		}
		_, err = p.Source(TokenRequest{Audience: "a", Params: url.Values{name: {"x"}}})
		wantReq := strings.ReplaceAll(want, "Config.EndpointParams", "TokenRequest.Params")
		wantReq = strings.ReplaceAll(wantReq, "Config.", "TokenRequest.")
		if err == nil || err.Error() != wantReq {
			t.Errorf("TokenRequest.Params[%q]:\n got %v\nwant %s", name, err, wantReq)
		}
	}
	if _, err := New(Config{TokenURL: e.URL + "/oauth/token", ClientID: "c", ClientSecret: "s", EndpointParams: url.Values{"resource": {"r"}}}); err != nil {
		t.Errorf("resource refused: %v", err)
	}
}

// for longest is dropped, its timers stop, and it answers ErrClosed.
func TestPoolDropsLeastRecentlyUsed(t *testing.T) {
	e := newEndpoint(t)
	p, clk := testPool(t, e.URL+"/oauth/token", func(c *Config) { c.MaxTokens = 3 })
	ctx := context.Background()
	req := func(i int) TokenRequest { return TokenRequest{Audience: "https://api/" + string(rune('0'+i))} }
	src := map[int]*TokenSource{}
	for i := 1; i <= 3; i++ {
		s, err := p.Source(req(i))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Token(); err != nil {
			t.Fatal(err)
		}
		src[i] = s
	}
	timers := clk.Pending()
	if _, err := p.Token(ctx, req(4)); err != nil { // drops 1, the oldest
		t.Fatal(err)
	}
	if _, err := src[2].Token(); err != nil { // 2 is used again
		t.Fatal(err)
	}
	if _, err := p.Token(ctx, req(5)); err != nil { // drops 3, unused since the hand passed
		t.Fatal(err)
	}
	for _, i := range []int{1, 3} {
		if _, err := src[i].Token(); !errors.Is(err, ErrClosed) {
			t.Errorf("dropped source %d: got %v, want ErrClosed", i, err)
		}
	}
	if _, err := src[2].Token(); err != nil {
		t.Errorf("source 2, used recently, was dropped: %v", err)
	}
	st := p.Stats()
	if st.Tokens != 3 || st.Evictions != 2 {
		t.Errorf("Stats: %d tokens, %d evictions; want 3 and 2", st.Tokens, st.Evictions)
	}
	if n := clk.Pending(); n != timers {
		t.Errorf("%d timers pending, want %d: a dropped token's timers stop", n, timers)
	}
	// Asking again makes a new source.
	s1, err := p.Source(req(1))
	if err != nil || s1 == src[1] {
		t.Fatalf("Source after the drop: %p, %v; want a new source", s1, err)
	}
	if _, err := s1.Token(); err != nil {
		t.Fatal(err)
	}
}

// TestPoolSourceCloseDropsOneToken: closing a pool's source leaves the
// pool and its other tokens working; closing the pool ends everything.
func TestPoolSourceCloseDropsOneToken(t *testing.T) {
	e := newEndpoint(t)
	p, _ := testPool(t, e.URL+"/oauth/token", nil)
	ctx := context.Background()
	a, _ := p.Source(TokenRequest{Audience: "a"})
	b, _ := p.Source(TokenRequest{Audience: "b"})
	for _, s := range []*TokenSource{a, b} {
		if _, err := s.Token(); err != nil {
			t.Fatal(err)
		}
	}
	a.Close()
	if _, err := a.Token(); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed source: %v", err)
	}
	if _, err := b.Token(); err != nil {
		t.Fatalf("the other source: %v", err)
	}
	if a2, _ := p.Source(TokenRequest{Audience: "a"}); a2 == a {
		t.Fatal("the closed source is still the pool's")
	}
	if st := p.Stats(); st.Tokens != 2 {
		t.Fatalf("%d tokens, want 2", st.Tokens)
	}
	p.Close()
	if _, err := p.Token(ctx, TokenRequest{Audience: "c"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Token after Close: %v", err)
	}
	if _, err := b.Token(); !errors.Is(err, ErrClosed) {
		t.Fatalf("source after the pool's Close: %v", err)
	}
	if _, err := p.Source(TokenRequest{Audience: "b"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Source after Close: %v", err)
	}
}

// TestPoolTransportTakesTheRequestFromTheContext: one client calls two
// APIs, each with its own token.
func TestPoolTransportTakesTheRequestFromTheContext(t *testing.T) {
	iss, cfg := poolIssuer(t)
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	billing := httptest.NewServer(iss.Protect("https://billing/", nil, ok))
	defer billing.Close()
	search := httptest.NewServer(iss.Protect("https://search/", []string{"read"}, ok))
	defer search.Close()
	p, err := NewPool(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := p.Client()
	for i := 0; i < 3; i++ {
		resp, err := c.Get(billing.URL) // the default request
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("billing: %v %v", resp, err)
		}
		resp.Body.Close()
		ctx := WithTokenRequest(context.Background(), TokenRequest{Audience: "https://search/", Scopes: []string{"read"}})
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, search.URL, nil)
		resp, err = c.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("search: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	if n := iss.Requests(); n != 2 {
		t.Fatalf("%d token requests, want 2", n)
	}
	if st := p.Stats(); st.Tokens != 2 || st.TokenRequests != 2 {
		t.Fatalf("Stats %+v", st)
	}
	// A request the pool refuses sends nothing.
	ctx := WithTokenRequest(context.Background(), TokenRequest{Audience: "https://search/", Params: url.Values{"scope": {"x"}}})
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, search.URL, nil)
	if _, err := c.Do(req); err == nil || !strings.Contains(err.Error(), `"scope"`) {
		t.Fatalf("got %v, want the refusal", err)
	}
}

func TestPoolSpreadsRefreshesOfTokensFetchedTogether(t *testing.T) {
	e := newEndpoint(t)
	e.lifetime.Store(60)
	p, _ := testPool(t, e.URL+"/oauth/token", func(c *Config) { c.NewTokenRate = -1 })
	var first, last time.Duration
	for i := 0; i < 200; i++ {
		s, err := p.Source(TokenRequest{Audience: "a", Params: url.Values{"i": {string(rune('a' + i%26)), string(rune('a' + i/26))}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Token(); err != nil {
			t.Fatal(err)
		}
		cur := s.cur.Load()
		at := cur.staleAt.Sub(cur.entry.IssuedAt)
		if i == 0 || at < first {
			first = at
		}
		if at > last {
			last = at
		}
	}
	// Fetched at one instant, their refreshes spread over most of the
	// 60 s lifetime, not the few seconds of the usual jitter.
	if last-first < 30*time.Second {
		t.Fatalf("refreshes from %v to %v after issue: not spread", first, last)
	}
	if first < 6*time.Second {
		t.Fatalf("a refresh %v after issue: sooner than a tenth of the lifetime", first)
	}
}

// TestPoolTokenAllocatesNothing: with its token fresh, p.Token costs a
// lookup and no allocation, whatever the request holds.
func TestPoolTokenAllocatesNothing(t *testing.T) {
	e := newEndpoint(t)
	p, _ := testPool(t, e.URL+"/oauth/token", nil)
	ctx := context.Background()
	r := TokenRequest{Audience: "https://api/", Scopes: []string{"write", "read"}, Organization: "org_1", Params: url.Values{"resource": {"https://r/"}, "tenant": {"t"}}}
	if _, err := p.Token(ctx, r); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { p.Token(ctx, r) }); n != 0 {
		t.Fatalf("p.Token allocates %v times per call", n)
	}
}

// TestPoolDPoP: the tokens of a pool are bound to the client's one DPoP
// key, share its nonces (the token endpoint's nonce learned by one token's
// fetch serves the next), and each API gets its own token with a proof.
func TestPoolDPoP(t *testing.T) {
	iss := m2mtest.NewServer(m2mtest.Client{ID: "svc", Secret: testSecret, Audiences: []string{"https://billing/", "https://search/"}, RequireDPoP: true})
	defer iss.Close()
	iss.RequireDPoPNonce(true, true)
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	billing := httptest.NewServer(iss.Protect("https://billing/", nil, ok))
	defer billing.Close()
	search := httptest.NewServer(iss.Protect("https://search/", nil, ok))
	defer search.Close()
	p, err := NewPool(Config{TokenURL: iss.TokenURL(), ClientID: "svc", ClientSecret: testSecret, Audience: "https://billing/",
		DPoPKey: ecKey(t, elliptic.P256()), RequireDPoP: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := p.Client()
	for _, call := range []struct {
		url string
		ctx context.Context
	}{
		{billing.URL, context.Background()},
		{search.URL, WithTokenRequest(context.Background(), TokenRequest{Audience: "https://search/"})},
	} {
		req, _ := http.NewRequestWithContext(call.ctx, http.MethodGet, call.url, nil)
		resp, err := c.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", call.url, resp, err)
		}
		resp.Body.Close()
	}
	// The first fetch learned the token endpoint's nonce (one challenge);
	// the second token's fetch sent it at once.
	if n := iss.Requests(); n != 3 {
		t.Errorf("%d token requests, want 3: one nonce challenge for the client, not one per token", n)
	}
	for _, aud := range []string{"https://billing/", "https://search/"} {
		tok, err := p.Token(context.Background(), TokenRequest{Audience: aud})
		if err != nil || tok.Type() != "DPoP" {
			t.Fatalf("%s: %v %v", aud, tok, err)
		}
	}
}
