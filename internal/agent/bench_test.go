package agent

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"

	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// BenchmarkAgentProxy compares a request through the agent's proxy (its
// guards, connection cap, body deadline and path check, the library's
// Transport, the request counter) with one through a
// bare httputil.ReverseProxy with the same connection pool, to the same
// upstream, from 32 parallel clients. Run it a few times, so that the two
// take turns:
//
//	for i in 1 2 3 4 5 6 7 8; do go test -run '^$' -bench BenchmarkAgentProxy ./internal/agent; done > bench.txt
//	benchstat -col /impl bench.txt
func BenchmarkAgentProxy(b *testing.B) {
	s := m2mtest.NewServer(m2mtest.Client{ID: "cli", Secret: secret, Audiences: []string{aud}})
	defer s.Close()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		io.WriteString(w, "ok")
	}))
	defer upstream.Close()
	a, err := New(Config{Sources: []Source{source(s)}, Proxies: []Proxy{{Source: "default", Listen: "127.0.0.1:0", Upstream: upstream.URL}}})
	if err != nil {
		b.Fatal(err)
	}
	defer a.closeSources()
	// Served as run serves it: the connection cap and the body deadline.
	agentSrv := httptest.NewUnstartedServer(bodyDeadline(a.serveProxy(a.proxies[0]), bodyGrace))
	agentSrv.Listener = newLimitListener(agentSrv.Listener, DefaultMaxConns)
	agentSrv.Start()
	defer agentSrv.Close()

	target, _ := url.Parse(upstream.URL)
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.MaxIdleConns, base.MaxIdleConnsPerHost = 512, 256
	bareSrv := httptest.NewServer(&httputil.ReverseProxy{
		Rewrite:       func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
		Transport:     base,
		FlushInterval: -1,
	})
	defer bareSrv.Close()
	tok, err := a.sources[0].src.TokenContext(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name, url, auth string
	}{
		{"impl=agent", agentSrv.URL + "/x", ""},
		{"impl=bare", bareSrv.URL + "/x", "Bearer " + tok.AccessToken},
	} {
		b.Run(c.name, func(b *testing.B) {
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 256, 256
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			b.ReportAllocs()
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest("GET", c.url, nil)
					if c.auth != "" {
						req.Header.Set("Authorization", c.auth)
					}
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
		})
	}
}

// BenchmarkAgentTokenEndpoint is GET /v1/token/NAME answered from memory,
// in-process (no connection), from parallel callers: the endpoint's own
// cost, which a reload's bookkeeping (the sources' lock, the request
// counted in flight) adds to.
func BenchmarkAgentTokenEndpoint(b *testing.B) {
	s := m2mtest.NewServer(m2mtest.Client{ID: "cli", Secret: secret, Audiences: []string{aud}})
	defer s.Close()
	a, err := New(Config{Sources: []Source{source(s)}, Listeners: []Listener{{"127.0.0.1:0"}}})
	if err != nil {
		b.Fatal(err)
	}
	defer a.closeSources()
	h := a.Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/token/default", nil))
	if rec.Code != http.StatusOK {
		b.Fatalf("%d %s", rec.Code, rec.Body)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest("GET", "/v1/token/default", nil)
		for pb.Next() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				b.Errorf("status %d", rec.Code)
				return
			}
		}
	})
}
