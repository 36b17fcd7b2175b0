package m2mtoken

// Tests of the refresh model (refresh.go): fresh, stale and expired states
// on timers and clocks, background refresh, backoff, one fetch for many
// callers, and the waits it counts.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestFreshStaleExpired walks one token through its states on a fake clock.
// Lifetime 100 s: window min(5m, 20s) = 20 s, skew min(10s, 5s) = 5 s.
func TestFreshStaleExpired(t *testing.T) {
	e := newEndpoint(t)
	s, clk := testSource(t, e, nil)
	if _, err := s.Token(); err != nil {
		t.Fatal(err)
	}
	clk.Advance(79 * time.Second) // fresh
	if tok, _ := s.Token(); tok.AccessToken != "tok-1" || e.count() != 1 {
		t.Fatalf("fresh: got %q after %d requests", tok.AccessToken, e.count())
	}

	// Stale: the old token comes back at once while the refresh is held.
	gate := make(chan struct{})
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool { <-gate; return false })
	clk.Advance(2 * time.Second)
	for i := 0; i < 100; i++ {
		if tok, err := s.Token(); err != nil || tok.AccessToken != "tok-1" {
			t.Fatalf("stale: %v %v", tok, err)
		}
	}
	close(gate)
	waitBackground(s)
	if tok, _ := s.Token(); tok.AccessToken != "tok-2" {
		t.Fatalf("after refresh: %q", tok.AccessToken)
	}
	if st := s.Stats(); st.BackgroundRefreshes != 1 || st.TokenRequests != 2 {
		t.Fatalf("stats %+v: want one background refresh", st)
	}
}

func TestIdleSourceMakesNoRequests(t *testing.T) {
	e := newEndpoint(t)
	s, clk := testSource(t, e, nil)
	s.Token()
	for i := 0; i < 50; i++ {
		clk.Advance(time.Hour)
	}
	if e.count() != 1 {
		t.Fatalf("idle source made %d requests", e.count())
	}
	if tok, _ := s.Token(); tok.AccessToken != "tok-2" {
		t.Fatalf("after expiry: %q", tok.AccessToken)
	}
}

func TestInsideSkewWaitsForFetch(t *testing.T) {
	e := newEndpoint(t)
	s, clk := testSource(t, e, nil)
	s.Token()
	clk.Advance(96 * time.Second) // 4 s left, inside the 5 s skew
	tok, err := s.Token()
	if err != nil || tok.AccessToken != "tok-2" {
		t.Fatalf("got %v %v, want a new token", tok, err)
	}
}

// TestWindows checks the windows for lifetimes from 2 s to 30 days.
func TestWindows(t *testing.T) {
	e := newEndpoint(t)
	s, _ := testSource(t, e, nil)
	issued := startTime()
	for _, life := range []time.Duration{2 * time.Second, 10 * time.Second, time.Minute, time.Hour, 24 * time.Hour, 30 * 24 * time.Hour} {
		for _, jit := range []float64{0, 1} {
			s.c.rand = func() float64 { return jit }
			en := s.newHeld(&Entry{AccessToken: "x", IssuedAt: issued, Expiry: issued.Add(life)}, nil)
			fresh, stale, skew := en.staleAt.Sub(issued), en.unusableAt.Sub(en.staleAt), issued.Add(life).Sub(en.unusableAt)
			if fresh < life/3 || stale <= 0 || skew <= 0 || skew > 10*time.Second || stale+skew > 6*time.Minute+time.Second {
				t.Errorf("life %v jitter %v: fresh %v, stale %v, skew %v", life, jit, fresh, stale, skew)
			}
		}
	}
}

func TestReached(t *testing.T) {
	now := time.Now() // with a monotonic reading
	for _, c := range []struct {
		name string
		t    time.Time
		want bool
	}{
		{"ahead", now.Add(time.Second), false},
		{"now", now, true},
		{"past", now.Add(-time.Second), true},
		{"ahead, wall only", now.Add(time.Second).Round(0), false},
		{"past, wall only", now.Add(-time.Second).Round(0), true},
	} {
		if got := reached(now, c.t); got != c.want {
			t.Errorf("%s: reached = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestOneRequestForManyCallers(t *testing.T) {
	e := newEndpoint(t)
	s, _ := testSource(t, e, nil)
	gate := make(chan struct{})
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool { <-gate; return false })
	const callers = 1000
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, err := s.Token()
			if err == nil && tok.AccessToken != "tok-1" {
				err = fmt.Errorf("got %q", tok.AccessToken)
			}
			errs <- err
		}()
	}
	eventually(t, "all callers to wait", func() bool { return s.stats.joins.Load() == callers })
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if e.count() != 1 {
		t.Fatalf("%d token requests, want 1", e.count())
	}
	if st := s.Stats(); st.Collapsed != callers-1 {
		t.Fatalf("collapsed = %d, want %d", st.Collapsed, callers-1)
	}
}

func TestWaiterCancelDoesNotKillFetch(t *testing.T) {
	e := newEndpoint(t)
	s, _ := testSource(t, e, nil)
	gate := make(chan struct{})
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool { <-gate; return false })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { _, err := s.TokenContext(ctx); done <- err }()
	eventually(t, "the request to arrive", func() bool { return e.count() == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiter got %v", err)
	}
	close(gate)
	tok, err := s.Token()
	if err != nil || tok.AccessToken != "tok-1" || e.count() != 1 {
		t.Fatalf("after cancel: %v %v, %d requests", tok, err, e.count())
	}
}

func TestFailedRefreshKeepsOldToken(t *testing.T) {
	e := newEndpoint(t)
	logs := &logBuffer{}
	s, clk := testSource(t, e, func(c *Config) { c.MaxAttempts = 1; c.Logger = logs.logger() })
	s.Token()
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool { w.WriteHeader(500); return true })
	clk.Advance(85 * time.Second) // stale
	for i := 0; i < 3; i++ {
		if tok, err := s.Token(); err != nil || tok.AccessToken != "tok-1" {
			t.Fatalf("stale with failing endpoint: %v %v", tok, err)
		}
		waitBackground(s)
	}
	// The backoff keeps a second refresh from starting at once.
	if e.count() != 2 {
		t.Fatalf("%d requests, want 2 (one failed refresh)", e.count())
	}
	if !strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("no warning logged:\n%s", logs)
	}
	clk.Advance(time.Second) // past the first backoff
	s.Token()
	waitBackground(s)
	if e.count() != 3 {
		t.Fatalf("%d requests after the backoff, want 3", e.count())
	}
	clk.Advance(15 * time.Second) // inside the skew: now the error surfaces
	if _, err := s.Token(); err == nil {
		t.Fatal("no error once the token expired")
	}
	e.setHandler(nil)
	if tok, err := s.Token(); err != nil || !strings.HasPrefix(tok.AccessToken, "tok-") {
		t.Fatalf("after recovery: %v %v", tok, err)
	}
}

// TestTokenThatArrivesTooLate: an answer that took most of the token's
// lifetime is an error that says so, not a token that is unusable at once.
func TestTokenThatArrivesTooLate(t *testing.T) {
	e := newEndpoint(t) // 100 s tokens
	s, clk := testSource(t, e, func(c *Config) { c.MaxAttempts = 1 })
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
		clk.Advance(97 * time.Second) // the answer takes 97 s of the 100
		return false
	})
	_, err := s.Token()
	var te *TokenError
	if !errors.As(err, &te) {
		t.Fatalf("err = %v, want a *TokenError", err)
	}
	for _, want := range []string{"had 3s left when it arrived", "expiry skew (5s)", "lifetime was 1m40s", "answer took 1m37s",
		"check the endpoint's latency and the clocks, or lower Config.ExpirySkew"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
	// Where the user cannot set the skew (a command without a flag for
	// it), the message does not tell them to.
	s, clk = testSource(t, e, func(c *Config) {
		c.MaxAttempts = 1
		c.FieldNames = func(f string) string { return map[string]string{"TokenURL": "--token-url"}[f] }
	})
	if _, err = s.Token(); err == nil || strings.Contains(err.Error(), "ExpirySkew") || !strings.HasSuffix(err.Error(), "check the endpoint's latency and the clocks") {
		t.Errorf("without a setting for the skew: %v", err)
	}
}

// TestLateCallerMakesNoRequest: a caller that found no token, but reaches
// the flight group only after that flight installed one, gets that token
// without a token request. (Under CPU load, one of 1,000 cold-start callers
// once made a second, billed, request this way.)
func TestLateCallerMakesNoRequest(t *testing.T) {
	e := newEndpoint(t)
	s, _ := testSource(t, e, nil)
	first, err := s.Token()
	if err != nil {
		t.Fatal(err)
	}
	// What a late caller does after its load of the hot path came up empty.
	r := <-s.fetches.join(func() fetched { return s.fetch(context.Background(), false) })
	if r.err != nil || r.h.tok != first {
		t.Fatalf("late caller: %v %v, want the installed token", r.h, r.err)
	}
	if e.count() != 1 {
		t.Fatalf("%d token requests, want 1", e.count())
	}
}

// TestSuspendedMachine: while a laptop sleeps or a VM is paused the
// monotonic clock, and so every timer, stands still, but the token's expiry
// is wall-clock. After the pause, a fresh token is handed out for at most
// watchInterval of running time, and never from the slow path.
func TestSuspendedMachine(t *testing.T) {
	t.Run("fresh", func(t *testing.T) {
		e := newEndpoint(t) // 100 s tokens: stale at 80 s, unusable at 95 s
		s, clk := testSource(t, e, nil)
		if _, err := s.Token(); err != nil {
			t.Fatal(err)
		}
		clk.Advance(10 * time.Second)
		clk.Suspend(time.Hour) // no timer fires
		clk.Advance(watchInterval)
		tok, err := s.Token()
		if err != nil || tok.AccessToken != "tok-2" {
			t.Fatalf("%v of running time after an hour's sleep: %v %v, want tok-2", watchInterval, tok, err)
		}
	})
	t.Run("stale", func(t *testing.T) {
		e := newEndpoint(t)
		s, clk := testSource(t, e, func(c *Config) { c.MaxAttempts = 1 })
		if _, err := s.Token(); err != nil {
			t.Fatal(err)
		}
		e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool { w.WriteHeader(503); return true })
		clk.Advance(85 * time.Second) // stale; its background refresh fails
		if tok, err := s.Token(); err != nil || tok.AccessToken != "tok-1" {
			t.Fatalf("stale: %v %v", tok, err)
		}
		waitBackground(s)
		clk.Suspend(time.Hour)
		// The slow path reads the clock: the expired token is not handed
		// out, even though no timer has fired.
		if tok, err := s.Token(); err == nil {
			t.Fatalf("after an hour's sleep: %q, want an error (the endpoint is down)", tok.AccessToken)
		}
		e.setHandler(nil)
		if tok, err := s.Token(); err != nil || tok.AccessToken == "tok-1" {
			t.Fatalf("endpoint back: %v %v", tok, err)
		}
	})
}

// TestFreshTokenOnSlowPathStartsNoRefresh: the hot path can miss a fresh
// token (while install runs); the slow path then hands it out without
// starting a refresh, and the token's own refresh still starts when it
// turns stale.
func TestFreshTokenOnSlowPathStartsNoRefresh(t *testing.T) {
	e := newEndpoint(t)
	s, clk := testSource(t, e, nil)
	if _, err := s.Token(); err != nil {
		t.Fatal(err)
	}
	s.fresh.Store(nil) // as seen between install's two stores
	if tok, err := s.Token(); err != nil || tok.AccessToken != "tok-1" {
		t.Fatalf("slow path, fresh token: %v %v", tok, err)
	}
	waitBackground(s)
	if st := s.Stats(); st.BackgroundRefreshes != 0 || e.count() != 1 {
		t.Fatalf("a fresh token started a refresh: %+v, %d requests", st, e.count())
	}
	clk.Advance(85 * time.Second) // stale
	s.Token()
	waitBackground(s)
	if tok, _ := s.Token(); tok.AccessToken != "tok-2" {
		t.Fatalf("after the stale token's refresh: %q, want tok-2", tok.AccessToken)
	}
}

// TestStatsWaits: callers waiting for the first token are not counted;
// stale tokens refreshed in the background cost no wait; a call that finds
// no usable token later (invalidated, or expired while idle) is counted.
func TestStatsWaits(t *testing.T) {
	e := newEndpoint(t)
	s, clk := testSource(t, e, nil) // 100 s tokens: stale at 80 s, unusable at 95 s
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() { defer wg.Done(); s.Token() }()
	}
	wg.Wait()
	if st := s.Stats(); st.Waits != 0 {
		t.Fatalf("first token: Waits %d, want 0", st.Waits)
	}
	clk.Advance(85 * time.Second) // stale
	for range 5 {
		if _, err := s.Token(); err != nil {
			t.Fatal(err)
		}
	}
	waitBackground(s)
	if st := s.Stats(); st.Waits != 0 || st.BackgroundRefreshes != 1 || e.count() != 2 {
		t.Fatalf("stale: %+v after %d requests, want no wait and one refresh", st, e.count())
	}
	tok, _ := s.Token()
	s.Invalidate(tok)
	if _, err := s.Token(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Waits != 1 {
		t.Fatalf("after Invalidate: Waits %d, want 1", st.Waits)
	}
	clk.Advance(200 * time.Second) // idle past expiry
	s.Token()
	if st := s.Stats(); st.Waits != 2 {
		t.Fatalf("after expiry: Waits %d, want 2", st.Waits)
	}
}
