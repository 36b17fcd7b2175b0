package m2mtoken

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// TestChaos runs 64 goroutines against a protected API for 15 s with
// 3-second tokens while about 30% of token answers are faults, then takes
// the token endpoint down for longer than a token lifetime, then brings it
// back.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test takes about 25 s; run without -short")
	}
	const audience = "https://api.chaos/"
	iss := m2mtest.NewServer(m2mtest.Client{ID: "chaos", Secret: testSecret, Audiences: []string{audience}})
	defer iss.Close()
	iss.SetTokenLifetime(3 * time.Second)
	var unauthenticated, rejected atomic.Int64
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		if auth == "" {
			unauthenticated.Add(1)
		}
		if _, err := iss.Verify(strings.TrimPrefix(auth, "Bearer "), audience); err != nil {
			rejected.Add(1)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		io.WriteString(w, "ok")
	}))
	defer api.Close()
	src, err := New(Config{TokenURL: iss.TokenURL(), ClientID: "chaos", ClientSecret: testSecret, Audience: audience, MaxBackoff: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	client := src.Client()

	call := func(timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", api.URL, nil)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return errors.New(resp.Status)
		}
		return nil
	}
	load := func(d, timeout time.Duration) (calls, failed int64, firstErr error) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		stop := time.Now().Add(d)
		for g := 0; g < 64; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					err := call(timeout)
					mu.Lock()
					calls++
					if err != nil {
						failed++
						if firstErr == nil {
							firstErr = err
						}
					}
					mu.Unlock()
					if err != nil {
						time.Sleep(50 * time.Millisecond)
					}
				}
			}()
		}
		wg.Wait()
		return calls, failed, firstErr
	}

	// Phase 1: about 30% of token answers are faults.
	iss.SetRandomFaults(0.3,
		m2mtest.Fault{Status: 500},
		m2mtest.Fault{Status: 429, RetryAfter: time.Second},
		m2mtest.Fault{Truncated: true},
		m2mtest.Fault{Latency: time.Second},
		m2mtest.Fault{Drop: true},
	)
	calls, failed, firstErr := load(15*time.Second, 10*time.Second)
	st := src.Stats()
	t.Logf("faults: %d API calls, %d failed; %d token requests (%d failed), %d tokens issued over 5 lifetimes",
		calls, failed, st.TokenRequests, st.Failures, iss.TokensIssued("chaos"))
	if failed != 0 || calls == 0 {
		t.Fatalf("%d of %d API calls failed under faults; first: %v", failed, calls, firstErr)
	}

	// Phase 2: the endpoint is down for 5 s, longer than a token lifetime.
	iss.SetRandomFaults(1, m2mtest.Fault{Status: 503}, m2mtest.Fault{Drop: true})
	calls, failed, firstErr = load(5*time.Second, time.Second)
	t.Logf("outage: %d API calls, %d failed; first error: %v", calls, failed, firstErr)
	if failed == 0 {
		t.Fatal("no call failed while the token endpoint was down for longer than a token lifetime")
	}
	var werr *WaitError
	var terr *TokenError
	if !errors.As(firstErr, &werr) && !errors.As(firstErr, &terr) {
		t.Fatalf("outage error is not a clear token error: %v", firstErr)
	}
	if !strings.Contains(firstErr.Error(), "503") && !strings.Contains(firstErr.Error(), "EOF") && !strings.Contains(firstErr.Error(), "reset") {
		t.Errorf("outage error does not say what the endpoint answered: %v", firstErr)
	}

	// Phase 3: it comes back; a call succeeds within one backoff step.
	iss.SetRandomFaults(0)
	back := time.Now()
	for call(10*time.Second) != nil {
		if time.Since(back) > 10*time.Second {
			t.Fatal("no recovery within 10 s")
		}
	}
	recovered := time.Since(back)
	t.Logf("recovered %v after the endpoint came back (MaxBackoff 2s)", recovered.Round(time.Millisecond))
	if recovered > 3*time.Second {
		t.Errorf("recovery took %v, more than one backoff step (2 s) plus a margin", recovered)
	}
	if n := unauthenticated.Load(); n != 0 {
		t.Fatalf("%d API requests were sent without a token", n)
	}
}
