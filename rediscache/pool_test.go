package rediscache

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

	"github.com/m2mtoken/m2mtoken"
)

// spell writes a token request out canonically: the echo issuer puts it in
// the token, and each caller checks it got the token of what it asked.
func spell(r m2mtoken.TokenRequest) string {
	sc := slices.Clone(r.Scopes)
	slices.Sort(sc)
	sc = slices.Compact(sc)
	return fmt.Sprintf("aud=%s;scope=%s;org=%s;params=%s", r.Audience, strings.Join(sc, " "), r.Organization, url.Values(r.Params).Encode())
}

// TestPoolsShareRedisByEveryField: two pools (two instances) share Redis;
// requests that differ in one field each, asked cold and concurrently, each
// get the token of exactly what they asked.
func TestPoolsShareRedisByEveryField(t *testing.T) {
	r := startRedis(t)
	var issued atomic.Int64
	iss := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		f := r.PostForm
		req := m2mtoken.TokenRequest{Audience: f.Get("audience"), Scopes: strings.Fields(f.Get("scope")), Organization: f.Get("organization"), Params: url.Values{}}
		for k, vs := range f {
			switch k {
			case "grant_type", "client_id", "client_secret", "audience", "scope", "organization":
			default:
				req.Params[k] = vs
			}
		}
		time.Sleep(2 * time.Millisecond)
		w.Header().Set("Content-Type", "application/json")
		// base64url: a token is a header-safe RFC 6750 token.
		fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":3600}`, base64.RawURLEncoding.EncodeToString([]byte(spell(req)))+"."+fmt.Sprint(issued.Add(1)))
	}))
	defer iss.Close()

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
		p, err := m2mtoken.NewPool(m2mtoken.Config{TokenURL: iss.URL + "/oauth/token", ClientID: "svc", ClientSecret: "pool-secret", Cache: New(r.client(t))})
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
						enc, _, _ := strings.Cut(tok.AccessToken, ".")
						if got, _ := base64.RawURLEncoding.DecodeString(enc); string(got) != spell(rq) {
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
	if n := issued.Load(); n != int64(len(reqs)) {
		t.Errorf("%d tokens issued for %d requests over two instances sharing Redis", n, len(reqs))
	}
}
