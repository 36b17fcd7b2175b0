package m2mtoken

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"testing"

	"github.com/m2mtoken/m2mtoken/internal/echoissuer"
)

// spell is the request as an echo issuer's token spells it.
func spell(r TokenRequest) string {
	return echoissuer.Spell(r.Audience, r.Scopes, r.Organization, r.Params)
}

// oneFieldApart returns requests that each differ from the first in one
// field.
func oneFieldApart() []TokenRequest {
	base := TokenRequest{Audience: "https://a/", Scopes: []string{"read"}, Organization: "org_1", Params: url.Values{"resource": {"https://r1/"}}}
	with := func(f func(*TokenRequest)) TokenRequest { r := base.clone(); f(&r); return r }
	return []TokenRequest{
		base,
		with(func(r *TokenRequest) { r.Audience = "https://b/" }),
		with(func(r *TokenRequest) { r.Audience = "" }),
		with(func(r *TokenRequest) { r.Scopes = nil }),
		with(func(r *TokenRequest) { r.Scopes = []string{"read", "write"} }),
		with(func(r *TokenRequest) { r.Scopes = []string{"write"} }),
		with(func(r *TokenRequest) { r.Organization = "" }),
		with(func(r *TokenRequest) { r.Organization = "org_2" }),
		with(func(r *TokenRequest) { r.Params = nil }),
		with(func(r *TokenRequest) { r.Params = url.Values{"resource": {"https://r2/"}} }),
		with(func(r *TokenRequest) { r.Params = url.Values{"resource": {"https://r1/", "https://r2/"}} }),
		with(func(r *TokenRequest) { r.Params["tenant"] = []string{"t1"} }),
		with(func(r *TokenRequest) { r.Params["tenant"] = []string{"t2"} }),
	}
}

// askAll asks every request from every pool, callers goroutines each,
// all at once, and checks that each caller got its own request's token.
func askAll(t *testing.T, pools []*Pool, reqs []TokenRequest, callers int) {
	t.Helper()
	gate := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, len(pools)*len(reqs)*callers)
	for _, p := range pools {
		for _, r := range reqs {
			for range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-gate
					tok, err := p.Token(context.Background(), r)
					if err != nil {
						errs <- err
						return
					}
					if got := echoissuer.Spelled(tok.AccessToken); got != spell(r) {
						errs <- fmt.Errorf("asked %s, got the token of %s", spell(r), got)
					}
				}()
			}
		}
	}
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestPoolKeysCoverEveryField: requests that differ in one field each,
// asked cold and concurrently through one pool, and through two pools
// sharing a MemoryCache or a FileCache, each get the token of exactly what
// they asked, and so do the fetches that replace invalidated tokens (the
// rediscache module runs the same over Redis).
func TestPoolKeysCoverEveryField(t *testing.T) {
	reqs := oneFieldApart()
	for _, tc := range []struct {
		name  string
		pools int
		cache func(t *testing.T) Cache
	}{
		{"one pool", 1, nil},
		{"two pools, MemoryCache", 2, func(*testing.T) Cache { return NewMemoryCache() }},
		{"two pools, FileCache", 2, func(t *testing.T) Cache { return NewFileCache(t.TempDir()) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			iss := echoissuer.New(t)
			var cache Cache
			if tc.cache != nil {
				cache = tc.cache(t)
			}
			var pools []*Pool
			for range tc.pools {
				p, err := NewPool(Config{TokenURL: iss.TokenURL(), ClientID: "svc", ClientSecret: testSecret, Cache: cache})
				if err != nil {
					t.Fatal(err)
				}
				defer p.Close()
				pools = append(pools, p)
			}
			askAll(t, pools, reqs, 8) // cold
			askAll(t, pools, reqs, 2) // warm
			if n := iss.Issued(); n < int64(len(reqs)) || n > int64(len(reqs)*tc.pools) {
				t.Errorf("%d tokens issued for %d requests and %d pools", n, len(reqs), tc.pools)
			}
			// Every token dropped (an API rejected it), then asked again
			// concurrently: the fetches that replace them keep to their
			// requests too.
			for _, p := range pools {
				for _, r := range reqs {
					s, _ := p.Source(r)
					if tok, err := s.Token(); err == nil {
						s.Invalidate(tok)
					}
				}
			}
			askAll(t, pools, reqs, 8)
		})
	}
}
