package m2mtoken

// A pool whose requests come from outside: a service that maps a tenant
// header to Organization lets whoever sends it requests choose the pool's
// requests. Each test replays one attack through the pool's API.

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// attackerRequest is the request of the attacker's i'th call: an
// organization the pool has never seen.
func attackerRequest(i int64) TokenRequest {
	return TokenRequest{Audience: "https://api.example.com/", Organization: "org_attacker_" + strconv.FormatInt(i, 10)}
}

// TestPoolEvictionDoesNotFailCallers: new requests make the pool drop a
// source whose first fetch is in flight; its callers, who asked the pool
// (Pool.Token, Pool.Client), get a token all the same, never ErrClosed.
func TestPoolEvictionDoesNotFailCallers(t *testing.T) {
	for _, via := range []string{"Token", "Client"} {
		t.Run(via, func(t *testing.T) {
			e := newEndpoint(t)
			arrived, release := make(chan struct{}), make(chan struct{})
			var once sync.Once
			free := func() { once.Do(func() { close(release) }) }
			t.Cleanup(free)
			e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
				if n == 1 { // the legitimate caller's first fetch
					close(arrived)
					<-release
				}
				return false
			})
			api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
			defer api.Close()
			p, _ := testPool(t, e.URL+"/oauth/token", func(c *Config) { c.MaxTokens = 2 })
			ctx := context.Background()
			legit := TokenRequest{Audience: "https://api.example.com/", Organization: "org_legit"}
			got := make(chan error, 1)
			go func() {
				if via == "Token" {
					_, err := p.Token(ctx, legit)
					got <- err
					return
				}
				req, _ := http.NewRequestWithContext(WithTokenRequest(ctx, legit), http.MethodGet, api.URL, nil)
				resp, err := p.Client().Do(req)
				if err == nil {
					resp.Body.Close()
				}
				got <- err
			}()
			<-arrived
			first, _ := p.Source(legit)
			for i := int64(0); !first.dropped.Load(); i++ {
				if _, err := p.Token(ctx, attackerRequest(i)); err != nil {
					t.Fatal(err)
				}
			}
			free()
			if err := <-got; err != nil {
				t.Fatalf("the caller whose source was dropped got %v", err)
			}
			if st := p.Stats(); st.Evictions == 0 {
				t.Fatal("nothing was dropped")
			}
		})
	}
}

// TestPoolGivesUpWhenDroppedAgainAndAgain: a pool too small for the
// requests in flight drops the caller's source each time it asks again;
// after a few tries the caller is told to raise MaxTokens.
func TestPoolGivesUpWhenDroppedAgainAndAgain(t *testing.T) {
	e := newEndpoint(t)
	arrived, release := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(release) })
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
		r.ParseForm()
		if r.PostForm.Get("organization") == "org_legit" {
			arrived <- struct{}{}
			<-release // never answered: only dropped
		}
		return false
	})
	p, _ := testPool(t, e.URL+"/oauth/token", func(c *Config) { c.MaxTokens, c.NewTokenRate = 2, -1 })
	ctx := context.Background()
	legit := TokenRequest{Audience: "https://api.example.com/", Organization: "org_legit"}
	got := make(chan error, 1)
	go func() {
		_, err := p.Token(ctx, legit)
		got <- err
	}()
	var i int64
	for range maxDropped {
		select {
		case <-arrived:
		case err := <-got:
			t.Fatalf("the caller returned after its source was dropped: %v", err)
		}
		s, _ := p.Source(legit)
		for ; !s.dropped.Load(); i++ {
			if _, err := p.Token(ctx, attackerRequest(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	err := <-got
	if err == nil || !strings.Contains(err.Error(), "more tokens at once than Config.MaxTokens (2) lets it hold; raise it") {
		t.Fatalf("got %v, want an error that says to raise MaxTokens", err)
	}
	t.Logf("dropped %d times: %v", maxDropped, err)
}
