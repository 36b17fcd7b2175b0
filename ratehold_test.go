package m2mtoken

// Tests of the rate-limit hold (ratehold.go).

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestPoolHoldsEveryTokenOnRateLimit: a 429 with Auth0's rate-limit
// headers to one token's request, an answer that says none is left, or a
// 429 that says nothing of when, stops every token of the pool: no request
// until the reset; then one goes first while the others wait for its
// answer, and they go once it got through.
func TestPoolHoldsEveryTokenOnRateLimit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first func(w http.ResponseWriter) // the answer to the first request
		wait  time.Duration               // how long the clock must move to end the hold
	}{
		{"429 with X-RateLimit-Reset", func(w http.ResponseWriter) {
			w.Header().Set("X-RateLimit-Limit", "30")
			w.Header().Set("X-RateLimit-Remaining", "0")
			w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(5*time.Second).Unix(), 10))
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"error":"too_many_requests","error_description":"Global limit has been reached"}`)
		}, 10 * time.Second},
		{"a token with X-RateLimit-Remaining 0", func(w http.ResponseWriter) {
			w.Header().Set("X-RateLimit-Limit", "30")
			w.Header().Set("X-RateLimit-Remaining", "0")
			w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(5*time.Second).Unix(), 10))
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"access_token":"first","token_type":"Bearer","expires_in":3600}`)
		}, 10 * time.Second},
		{"429 without headers", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"error":"too_many_requests","error_description":"Rate limit exceeded."}`)
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEndpoint(t)
			release := make(chan struct{})
			var once sync.Once
			free := func() { once.Do(func() { close(release) }) }
			t.Cleanup(free) // before the endpoint's Close, which waits for its handlers
			e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
				switch n {
				case 1:
					tc.first(w)
					return true
				case 2:
					<-release // the first request after the hold
				}
				return false
			})
			// No retries: the first token's own backoff would move the
			// fake clock past the hold.
			p, clk := testPool(t, e.URL+"/oauth/token", func(c *Config) { c.MaxAttempts = 1 })
			ctx := context.Background()
			p.Token(ctx, attackerRequest(0))
			hold := &p.c.hold
			held := func() (waiting int, probing bool) {
				hold.mu.Lock()
				defer hold.mu.Unlock()
				return hold.waiting, hold.probing
			}
			var wg sync.WaitGroup
			errs := make(chan error, 3)
			for i := range int64(3) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := p.Token(ctx, attackerRequest(1+i))
					errs <- err
				}()
			}
			if tc.wait > 0 {
				eventually(t, "three tokens held", func() bool { w, _ := held(); return w == 3 })
				if n := e.count(); n != 1 {
					t.Fatalf("%d token requests during the hold, want 1", n)
				}
				// A caller that gives up is told why.
				wctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
				_, err := p.Token(wctx, attackerRequest(9))
				cancel()
				if !strings.Contains(fmt.Sprint(err), "no token of the pool sends a request until the rate limit resets") {
					t.Errorf("a caller that stopped waiting was told: %v", err)
				}
				t.Logf("a caller that stopped waiting: %v", err)
				clk.Advance(tc.wait)
			}
			// One request goes first; the others (and the fetch of the
			// caller that gave up, which goes on) wait for its answer.
			fetches := 3
			if tc.wait > 0 {
				fetches++
			}
			eventually(t, "one request first, the others waiting for it", func() bool { w, p := held(); return w == fetches-1 && p })
			eventually(t, "the first request", func() bool { return e.count() == 2 })
			if w, p := held(); w != fetches-1 || !p || e.count() != 2 {
				t.Fatalf("%d token requests and %d held after the hold, want 2 and %d: one goes first", e.count(), w, fetches-1)
			}
			free()
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			eventually(t, "every fetch's request", func() bool { return e.count() == int64(1+fetches) })
		})
	}
}
