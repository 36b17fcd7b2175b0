package m2mtoken

// Tests of TokenRequest (tokenrequest.go): what a request sends, and the
// requests a pool refuses.

import (
	"context"
	"io"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// TestPoolRefusesOversizedRequests: a request with a field larger than any
// real one (a 64 KiB organization from a tenant header) is refused with an
// error naming the field, and sends nothing; so is a Config whose default
// request is.
func TestPoolRefusesOversizedRequests(t *testing.T) {
	e := newEndpoint(t)
	p, _ := testPool(t, e.URL+"/oauth/token", nil)
	big := strings.Repeat("x", 64<<10)
	for _, tc := range []struct {
		field string
		req   TokenRequest
	}{
		{"Audience", TokenRequest{Audience: big}},
		{"Organization", TokenRequest{Audience: "a", Organization: big}},
		{"Scopes", TokenRequest{Audience: "a", Scopes: []string{big}}},
		{"Scopes", TokenRequest{Audience: "a", Scopes: make([]string, 64<<10)}},
		{"Params", TokenRequest{Audience: "a", Params: url.Values{"resource": {big}}}},
		{"Params", TokenRequest{Audience: "a", Params: url.Values{"x": make([]string, 64<<10)}}},
	} {
		_, err := p.Token(context.Background(), tc.req)
		if err == nil || !strings.Contains(err.Error(), "TokenRequest."+tc.field+" is ") {
			t.Errorf("%s: got %v, want an error naming TokenRequest.%s", tc.field, err, tc.field)
		}
	}
	_, err := p.Token(context.Background(), TokenRequest{Audience: "a", Organization: big})
	t.Logf("a 64 KiB organization: %v", err)
	if n := e.count(); n != 0 {
		t.Fatalf("%d token requests for oversized requests", n)
	}
	for _, field := range []string{"Audience", "Organization", "Scopes", "EndpointParams"} {
		cfg := Config{TokenURL: e.URL, ClientID: "c", ClientSecret: "s"}
		switch field {
		case "Audience":
			cfg.Audience = big
		case "Organization":
			cfg.Organization = big
		case "Scopes":
			cfg.Scopes = []string{big}
		case "EndpointParams":
			cfg.EndpointParams = url.Values{"resource": {big}}
		}
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "Config."+field+" is 655") {
			t.Errorf("Config.%s of 64 KiB: got %v", field, err)
		}
	}
}

// TestPoolBytesPerTokenBounded: a pool filled with the largest requests
// it accepts holds a bounded number of bytes per token (the figures are
// printed): the 64 KiB organizations that cost 147 KiB each are refused.
func TestPoolBytesPerTokenBounded(t *testing.T) {
	const n = 2000
	e := newEndpoint(t)
	e.noRecord.Store(true)
	p, err := NewPool(Config{TokenURL: e.URL + "/oauth/token", ClientID: "c", ClientSecret: "s", NewTokenRate: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// Every request its own strings, as requests built from what callers
	// send are.
	pad := func(i int, size int) string {
		s := strconv.Itoa(i) + "-"
		return s + strings.Repeat("x", size-len(s))
	}
	for _, tc := range []struct {
		name  string
		req   func(i int) TokenRequest
		limit int // bytes per token
	}{
		{"largest organization", func(i int) TokenRequest {
			return TokenRequest{Audience: "https://api.example.com/", Organization: pad(i, maxOrganization)}
		}, 4 << 10},
		{"every field at its largest", func(i int) TokenRequest {
			return TokenRequest{Audience: pad(i, maxAudience), Organization: pad(i, maxOrganization),
				Scopes: []string{pad(i, maxScopes-1)}, Params: url.Values{"p": {pad(i, maxParams-3)}}}
		}, 48 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := p.Source(tc.req(-1)); err != nil {
				t.Fatalf("the largest accepted request is refused: %v", err)
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			fillPool(t, p, n, 8, tc.req)
			runtime.GC()
			runtime.ReadMemStats(&after)
			per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
			t.Logf("%s: %d B of heap per token; %d MiB at the default MaxTokens (10,000)", tc.name, per, per*defaultMaxTokens>>20)
			if per > int64(tc.limit) {
				t.Errorf("%d B per token, want at most %d", per, tc.limit)
			}
		})
	}
}

// TestPoolRequestsThatDifferOnTheWireNeverShareAToken: requests whose
// scopes or parameters differ only in ways a pool's key might leave out
// (an empty scope, a repeated one, spaces, a parameter with no value)
// each get a token that a request with exactly their own form earned, in
// one pool and through a cache shared with another pool.
func TestPoolRequestsThatDifferOnTheWireNeverShareAToken(t *testing.T) {
	reqs := []TokenRequest{{}, {Scopes: []string{}}, {Scopes: []string{""}}, {Scopes: []string{"", ""}}, {Scopes: []string{" "}},
		{Scopes: []string{"read"}}, {Scopes: []string{"read", ""}}, {Scopes: []string{"read", "read"}}, {Scopes: []string{" read"}},
		{Scopes: []string{"read write"}}, {Scopes: []string{"write", "read"}}, {Scopes: []string{"read", "write"}},
		{Params: url.Values{"x": {}}}, {Params: url.Values{"x": {""}}}, {Params: url.Values{"x": {"", ""}}}}
	for i := range reqs {
		reqs[i].Audience = "https://api.example.com/"
	}
	// What each request sends alone.
	alone := newEndpoint(t)
	sends := make([]string, len(reqs))
	for i, r := range reqs {
		p, _ := testPool(t, alone.URL+"/oauth/token", nil)
		if _, err := p.Token(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		sends[i] = alone.form(i).Encode()
	}
	e := newEndpoint(t)
	cache := NewMemoryCache()
	p1, clk := testPool(t, e.URL+"/oauth/token", func(c *Config) { c.Cache = cache })
	p2, err := newPool(Config{TokenURL: e.URL + "/oauth/token", ClientID: "client-1", ClientSecret: testSecret, Cache: cache}, clk, true)
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	for _, p := range []*Pool{p1, p2} {
		for i, r := range reqs {
			tok, err := p.Token(context.Background(), r)
			if err != nil {
				t.Fatal(err)
			}
			n, _ := strconv.Atoi(strings.TrimPrefix(tok.AccessToken, "tok-"))
			if earned := e.form(n - 1).Encode(); earned != sends[i] {
				t.Errorf("%q got the token of a request that sent %s; it sends %s", r.Scopes, earned, sends[i])
			}
		}
	}
	// Alone, [""] sends what no scopes send: no scope parameter at all.
	if strings.Contains(sends[2], "scope") {
		t.Errorf(`Scopes [""] sends %s`, sends[2])
	}
}

// TestJSONBodySendsNoEmptyParameter: a parameter with no value sends
// nothing in a JSON body, as in a form, so that it shares the key of a
// request without it.
func TestJSONBodySendsNoEmptyParameter(t *testing.T) {
	e := newEndpoint(t)
	p, _ := testPool(t, e.URL+"/oauth/token", func(c *Config) { c.JSONBody = true })
	s, err := p.Source(TokenRequest{Audience: "a", Params: url.Values{"x": {}, "y": {"1"}}})
	if err != nil {
		t.Fatal(err)
	}
	req, err := s.newRequest(context.Background(), s.c.cred.last())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(req.Body)
	if strings.Contains(string(body), `"x"`) || !strings.Contains(string(body), `"y":"1"`) {
		t.Fatalf("JSON body %s", body)
	}
}
