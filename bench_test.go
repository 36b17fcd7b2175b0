package m2mtoken

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	cryptorand "crypto/rand"
	"crypto/sha256"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// staticSource is the anchor's underlying source: it always returns the
// same long-lived token, so that ReuseTokenSource measures only its cache.
type staticSource struct{ tok *oauth2.Token }

func (s staticSource) Token() (*oauth2.Token, error) { return s.tok, nil }

// jwtSizedToken is as long as a typical Auth0 access token (an RS256 JWT
// with a few scopes: about 850 bytes), so that per-request work on the
// token string costs what it costs in production.
var jwtSizedToken = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImJlbmNoIn0." + strings.Repeat("x", 620) + "." + strings.Repeat("s", 172)

func benchSources(b *testing.B) (ours *TokenSource, anchor oauth2.TokenSource) {
	e := newEndpoint(b)
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":86400}`, jwtSizedToken)
		return true
	})
	s, err := New(Config{TokenURL: e.URL + "/oauth/token", ClientID: "c", ClientSecret: "s", Audience: "a"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	tok, err := s.Token()
	if err != nil {
		b.Fatal(err)
	}
	cached := &oauth2.Token{AccessToken: tok.AccessToken, TokenType: "Bearer", Expiry: time.Now().Add(24 * time.Hour)}
	return s, oauth2.ReuseTokenSource(cached, staticSource{cached})
}

// BenchmarkToken compares a cached Token() with oauth2.ReuseTokenSource.
// Compare: go test -run '^$' -bench 'Benchmark(Token|Transport)$' -count 10 | benchstat -col /impl -
func BenchmarkToken(b *testing.B) {
	ours, anchor := benchSources(b)
	for _, impl := range []struct {
		name string
		src  oauth2.TokenSource
	}{{"m2mtoken", ours}, {"oauth2", anchor}} {
		b.Run("mode=serial/impl="+impl.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := impl.src.Token(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("mode=parallel/impl="+impl.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := impl.src.Token(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkLifetimes runs one token lifetime per op on a fake clock: the
// token turns stale, is refreshed in the background, and is replaced. It
// reports the heap retained per lifetime, which stays at zero when nothing
// (timers, entries, goroutines) accumulates.
//
//	go test -run '^$' -bench BenchmarkLifetimes -benchtime 20000x .
func BenchmarkLifetimes(b *testing.B) {
	e := newEndpoint(b)
	e.noRecord.Store(true)
	s, clk := testSource(b, e, nil)
	if _, err := s.Token(); err != nil {
		b.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	goroutines := runtime.NumGoroutine()
	b.ReportAllocs()
	for b.Loop() {
		clk.Advance(85 * time.Second) // stale: the next call refreshes
		if _, err := s.Token(); err != nil {
			b.Fatal(err)
		}
		waitBackground(s)
		clk.Advance(15 * time.Second) // the old token's expiry passes
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(b.N), "retained-B/lifetime")
	b.ReportMetric(float64(runtime.NumGoroutine()-goroutines), "goroutines-added")
	if pending := clk.Pending(); pending > 2 {
		b.Fatalf("%d timers pending after %d lifetimes", pending, b.N)
	}
}

// BenchmarkTransportDPoP measures RoundTrip with a DPoP-bound token (a new
// proof per request) against the floor it cannot go under: one bare ES256
// signature with the same key, through the same crypto.Signer interface.
// The proof's header is encoded once per key and ath once per token, so
// the difference is the claims, base64 and the hash.
//
//	go test -run '^$' -bench 'BenchmarkTransportDPoP$' -count 10 | benchstat -col /impl -
func BenchmarkTransportDPoP(b *testing.B) {
	e := newEndpoint(b)
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":%q,"token_type":"DPoP","expires_in":86400}`, jwtSizedToken)
		return true
	})
	key, err := ecdsa.GenerateKey(elliptic.P256(), cryptorand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(Config{TokenURL: e.URL + "/oauth/token", ClientID: "c", ClientSecret: "s", Audience: "a", DPoPKey: key})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	if tok, err := s.Token(); err != nil || tok.Type() != "DPoP" {
		b.Fatal(tok, err)
	}
	base := noopRT{resp: &http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}}}
	rt := &Transport{Source: s, Base: base}
	req, _ := http.NewRequest("GET", "https://api.example.com/v1/things?page=2", nil)
	for i := 0; i < 4; i++ {
		req.Header.Set("X-Header-"+string(rune('A'+i)), "value")
	}
	b.Run("impl=dpop-transport", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := rt.RoundTrip(req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=es256-sign", func(b *testing.B) {
		b.ReportAllocs()
		var signer crypto.Signer = key
		digest := sha256.Sum256([]byte("the signing input of a proof"))
		for b.Loop() {
			if _, err := signer.Sign(cryptorand.Reader, digest[:], crypto.SHA256); err != nil {
				b.Fatal(err)
			}
		}
	})
}
