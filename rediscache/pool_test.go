package rediscache

import (
	"context"
	"net/url"
	"slices"
	"sync"
	"testing"

	"github.com/m2mtoken/m2mtoken/internal/echoissuer"

	"github.com/m2mtoken/m2mtoken"
)

// spell is the request as an echo issuer's token spells it.
func spell(r m2mtoken.TokenRequest) string {
	return echoissuer.Spell(r.Audience, r.Scopes, r.Organization, r.Params)
}

// TestPoolsShareRedisByEveryField: two pools (two instances) share Redis;
// requests that differ in one field each, asked cold and concurrently, each
// get the token of exactly what they asked.
func TestPoolsShareRedisByEveryField(t *testing.T) {
	r := startRedis(t)
	iss := echoissuer.New(t)

	base := m2mtoken.TokenRequest{Audience: "https://a/", Scopes: []string{"read"}, Organization: "org_1", Params: url.Values{"resource": {"https://r1/"}}}
	with := func(f func(*m2mtoken.TokenRequest)) m2mtoken.TokenRequest {
		r := base
		r.Scopes = slices.Clone(base.Scopes)
		r.Params = url.Values{"resource": {"https://r1/"}}
		f(&r)
		return r
	}
	reqs := []m2mtoken.TokenRequest{
		base,
		with(func(r *m2mtoken.TokenRequest) { r.Audience = "https://b/" }),
		with(func(r *m2mtoken.TokenRequest) { r.Scopes = nil }),
		with(func(r *m2mtoken.TokenRequest) { r.Scopes = []string{"read", "write"} }),
		with(func(r *m2mtoken.TokenRequest) { r.Organization = "" }),
		with(func(r *m2mtoken.TokenRequest) { r.Organization = "org_2" }),
		with(func(r *m2mtoken.TokenRequest) { r.Params = nil }),
		with(func(r *m2mtoken.TokenRequest) { r.Params = url.Values{"resource": {"https://r2/"}} }),
		with(func(r *m2mtoken.TokenRequest) { r.Params["tenant"] = []string{"t1"} }),
	}
	var pools []*m2mtoken.Pool
	for range 2 {
		p, err := m2mtoken.NewPool(m2mtoken.Config{TokenURL: iss.TokenURL(), ClientID: "svc", ClientSecret: "pool-secret", Cache: New(r.client(t))})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		pools = append(pools, p)
	}
	for _, callers := range []int{8, 2} { // cold, then warm
		gate := make(chan struct{})
		var wg sync.WaitGroup
		for _, p := range pools {
			for _, rq := range reqs {
				for range callers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-gate
						tok, err := p.Token(context.Background(), rq)
						if err != nil {
							t.Error(err)
							return
						}
						if got := echoissuer.Spelled(tok.AccessToken); got != spell(rq) {
							t.Errorf("asked %s, got the token of %s", spell(rq), got)
						}
					}()
				}
			}
		}
		close(gate)
		wg.Wait()
	}
	// The fleet lease makes one instance fetch each token for both.
	if n := iss.Issued(); n != int64(len(reqs)) {
		t.Errorf("%d tokens issued for %d requests over two instances sharing Redis", n, len(reqs))
	}
}
