package m2mtoken

// Tests of TokenRequest (tokenrequest.go): what a request sends, and the
// requests a pool refuses.

import (
	"context"
	"io"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

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
	req, err := s.newRequest(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(req.Body)
	if strings.Contains(string(body), `"x"`) || !strings.Contains(string(body), `"y":"1"`) {
		t.Fatalf("JSON body %s", body)
	}
}
