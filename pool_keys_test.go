package m2mtoken

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// echoIssuer issues tokens that spell out the request they answer:
// audience, scopes (as a set), organization and every other parameter,
// so that a caller can check it got the token of exactly what it asked.
func echoIssuer(t testing.TB) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		f := r.PostForm
		req := TokenRequest{Audience: f.Get("audience"), Scopes: strings.Fields(f.Get("scope")), Organization: f.Get("organization"), Params: url.Values{}}
		for k, vs := range f {
			if !reservedParam(k) {
				req.Params[k] = vs
			}
		}
		time.Sleep(2 * time.Millisecond) // widen the window in which concurrent fetches overlap
		w.Header().Set("Content-Type", "application/json")
		// base64url: a token is a header-safe RFC 6750 token.
		fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":3600}`, base64.RawURLEncoding.EncodeToString([]byte(spell(req)))+"."+fmt.Sprint(n.Add(1)))
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// spell writes a request out canonically.
func spell(r TokenRequest) string {
	sc := slices.Clone(r.Scopes)
	slices.Sort(sc)
	sc = slices.Compact(sc)
	return fmt.Sprintf("aud=%s;scope=%s;org=%s;params=%s", r.Audience, strings.Join(sc, " "), r.Organization, url.Values(r.Params).Encode())
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
					enc, _, _ := strings.Cut(tok.AccessToken, ".")
					if got, _ := base64.RawURLEncoding.DecodeString(enc); string(got) != spell(r) {
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
			iss, issued := echoIssuer(t)
			var cache Cache
			if tc.cache != nil {
				cache = tc.cache(t)
			}
			var pools []*Pool
			for range tc.pools {
				p, err := NewPool(Config{TokenURL: iss.URL + "/oauth/token", ClientID: "svc", ClientSecret: testSecret, Cache: cache})
				if err != nil {
					t.Fatal(err)
				}
				defer p.Close()
				pools = append(pools, p)
			}
			askAll(t, pools, reqs, 8) // cold
			askAll(t, pools, reqs, 2) // warm
			if n := issued.Load(); n < int64(len(reqs)) || n > int64(len(reqs)*tc.pools) {
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
