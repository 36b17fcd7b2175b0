package m2mtoken

// A pool whose requests come from outside: a service that maps a tenant
// header to Organization lets whoever sends it requests choose the pool's
// requests. Each test replays one attack through the pool's API.

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// attackerRequest is the request of the attacker's i'th call: an
// organization the pool has never seen.
func attackerRequest(i int64) TokenRequest {
	return TokenRequest{Audience: "https://api.example.com/", Organization: "org_attacker_" + strconv.FormatInt(i, 10)}
}

// TestPoolTokenRequestsPerAttackerCall measures, and prints, the token
// requests an attacker's calls cost through a pool with the default
// settings: a new organization per call against a fast local endpoint
// that issues a token for any, and 2,000 concurrent calls (each giving up
// after 1 s) while the endpoint answers every request 429 with Auth0's
// rate-limit headers.
func TestPoolTokenRequestsPerAttackerCall(t *testing.T) {
	t.Run("unique organizations", func(t *testing.T) {
		e := newEndpoint(t)
		e.noRecord.Store(true)
		p, err := NewPool(Config{TokenURL: e.URL + "/oauth/token", ClientID: "svc", ClientSecret: testSecret})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		const callers, period = 32, time.Second
		var calls, refused atomic.Int64
		start := time.Now()
		var wg sync.WaitGroup
		for range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Since(start) < period {
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					_, err := p.Token(ctx, attackerRequest(calls.Add(1)))
					cancel()
					if ne := (*NewTokenLimitError)(nil); errors.As(err, &ne) {
						refused.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		elapsed := time.Since(start)
		n := e.count()
		t.Logf("unique organizations: %d calls in %v made %d token requests (%.0f a second, %.4f a call); %d refused by the bound on new tokens",
			calls.Load(), elapsed.Round(time.Millisecond), n, float64(n)/elapsed.Seconds(), float64(n)/float64(calls.Load()), refused.Load())
		// The default bound: 100 at once, then 10 a second.
		if limit := int64(defaultNewTokenBurst + defaultNewTokenRate*elapsed.Seconds() + 1); n > limit {
			t.Errorf("%d token requests in %v, want at most %d (the default bound on new tokens)", n, elapsed, limit)
		}
	})

	for _, rate := range []float64{0, -1} {
		name := "under 429"
		if rate < 0 {
			name += ", no bound on new tokens"
		}
		t.Run(name, func(t *testing.T) { under429(t, rate) })
	}
}

// under429 is TestPoolTokenRequestsPerAttackerCall's second part, with
// Config.NewTokenRate rate.
func under429(t *testing.T, rate float64) {
	iss := m2mtest.NewServer(m2mtest.Client{ID: "svc", Secret: testSecret, Audiences: []string{"https://api.example.com/"}})
	defer iss.Close()
	// Auth0's global rate limit: X-RateLimit-Limit 30, Remaining 0,
	// Reset in 1 s, no Retry-After.
	iss.SetRandomFaults(1, m2mtest.Fault{Status: http.StatusTooManyRequests})
	p, err := NewPool(Config{TokenURL: iss.TokenURL(), ClientID: "svc", ClientSecret: testSecret, NewTokenRate: rate})
	if err != nil {
		t.Fatal(err)
	}
	const calls, aftermath = 2000, 3 * time.Second
	start := time.Now()
	var wg sync.WaitGroup
	for i := range int64(calls) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			p.Token(ctx, attackerRequest(i))
		}()
	}
	wg.Wait()
	// The fetches the calls started go on without them: count what
	// they send for a while longer, then close the pool.
	time.Sleep(aftermath)
	elapsed := time.Since(start)
	p.Close()
	n := iss.Requests()
	t.Logf("%d calls made %d token requests in %v (%.3f a call)", calls, n, elapsed.Round(time.Millisecond), float64(n)/calls)
	// At most the first wave (the requests in flight when the first 429
	// came back: MaxConnsPerHost), then one request per hold (the reset
	// is 1 s away, plus a second's margin).
	if limit := defaultMaxConnsPerHost + int(elapsed.Seconds()) + 1; n > limit {
		t.Errorf("%d token requests for %d calls under 429, want at most %d", n, calls, limit)
	}
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
			for i := int64(0); !first.life.dropped.Load(); i++ {
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
		for ; !s.life.dropped.Load(); i++ {
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
