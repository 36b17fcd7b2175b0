package m2mtoken

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// benchPool returns a pool holding n fresh tokens (JWT-sized, without
// extra fields), the requests they answer, and x/oauth2's cache over one
// such token.
func benchPool(b testing.TB, n int) (*Pool, []TokenRequest, oauth2.TokenSource) {
	e := newEndpoint(b)
	e.noRecord.Store(true)
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":86400}`, jwtSizedToken[:len(jwtSizedToken)-12]+fmt.Sprintf("%012d", n))
		return true
	})
	p, err := NewPool(Config{TokenURL: e.URL + "/oauth/token", ClientID: "c", ClientSecret: "s", MaxTokens: n, NewTokenRate: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	reqs := make([]TokenRequest, n)
	for i := range reqs {
		// An API per ten tokens, an organization each: a multi-tenant
		// backend's requests.
		reqs[i] = TokenRequest{Audience: "https://api-" + strconv.Itoa(i%10) + ".example.com/", Scopes: []string{"read:things"}, Organization: "org_" + strconv.Itoa(i)}
		if _, err := p.Token(context.Background(), reqs[i]); err != nil {
			b.Fatal(err)
		}
	}
	tok, _ := p.Token(context.Background(), reqs[0])
	cached := &oauth2.Token{AccessToken: tok.AccessToken, TokenType: "Bearer", Expiry: time.Now().Add(24 * time.Hour)}
	return p, reqs, oauth2.ReuseTokenSource(cached, staticSource{cached})
}

// BenchmarkPoolToken compares p.Token(ctx, r) in a pool of 1,000 tokens,
// and Token of one of its sources, with x/oauth2's ReuseTokenSource on one
// token, side by side in one run.
//
//	go test -run '^$' -bench 'BenchmarkPool(Token|Transport)$' -count 10 . | benchstat -col /impl -
func BenchmarkPoolToken(b *testing.B) {
	p, reqs, anchor := benchPool(b, 1000)
	ctx := context.Background()
	r := reqs[500]
	src, _ := p.Source(r)
	for _, impl := range []struct {
		name  string
		token func() (*oauth2.Token, error)
	}{
		{"pool", func() (*oauth2.Token, error) { return p.Token(ctx, r) }},
		{"source", src.Token},
		{"oauth2", anchor.Token},
	} {
		b.Run("mode=serial/impl="+impl.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := impl.token(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("mode=parallel/impl="+impl.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := impl.token(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkPoolTransport compares a request through p.Transport that
// names its token in its context (in a pool of 1,000 tokens) with
// oauth2.Transport, over the same no-op base.
func BenchmarkPoolTransport(b *testing.B) {
	p, reqs, anchor := benchPool(b, 1000)
	base := noopRT{resp: &http.Response{StatusCode: 200, Body: http.NoBody}}
	ctx := WithTokenRequest(context.Background(), reqs[500])
	for _, impl := range []struct {
		name string
		rt   http.RoundTripper
	}{{"pool", p.Transport(base)}, {"oauth2", &oauth2.Transport{Source: anchor, Base: base}}} {
		req, _ := http.NewRequestWithContext(ctx, "GET", "https://api.example.com/v1/things", nil)
		for i := 0; i < 4; i++ {
			req.Header.Set("X-Header-"+string(rune('A'+i)), "value")
		}
		b.Run("headers=04/impl="+impl.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := impl.rt.RoundTrip(req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPoolSources makes 20,000 sources in a new pool with a cache
// set: no per-token key derivation (the credential's slow hash is the
// client's, once).
//
//	go test -run '^$' -bench 'BenchmarkPoolSources$' -benchtime 5x .
func BenchmarkPoolSources(b *testing.B) {
	e := newEndpoint(b)
	reqs := make([]TokenRequest, 20_000)
	for i := range reqs {
		reqs[i] = TokenRequest{Audience: "https://api.example.com/", Organization: "org_" + strconv.Itoa(i)}
	}
	b.ReportAllocs()
	for b.Loop() {
		p, err := NewPool(Config{TokenURL: e.URL + "/oauth/token", ClientID: "c", ClientSecret: "s", Cache: NewMemoryCache(), MaxTokens: len(reqs)})
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range reqs {
			if _, err := p.Source(r); err != nil {
				b.Fatal(err)
			}
		}
		p.Close()
	}
}
