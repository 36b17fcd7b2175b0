package m2mtoken

import (
	"context"
	"crypto/elliptic"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"

	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// obsRecorder is an Observer that writes each event as a line.
type obsRecorder struct {
	mu     sync.Mutex
	events []string
	waits  []WaitInfo
	seen   []any // values of ctxMark seen by AttemptStart and by the HTTP request
}

type ctxMark struct{}

func (r *obsRecorder) add(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, fmt.Sprintf(format, args...))
}

func (r *obsRecorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev := r.events
	r.events = nil
	return ev
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	var qe *QuotaError
	var te *TokenError
	switch {
	case errors.As(err, &qe):
		return "quota"
	case errors.As(err, &te):
		return fmt.Sprint(te.StatusCode)
	}
	return "error"
}

func (r *obsRecorder) observer() *Observer {
	n := 0
	return &Observer{
		FetchStart: func(ctx context.Context, i FetchStartInfo) context.Context {
			r.add("fetch start %s", i.Reason)
			r.mu.Lock()
			n++
			r.mu.Unlock()
			return context.WithValue(ctx, ctxMark{}, fmt.Sprint("fetch-", n))
		},
		FetchDone: func(ctx context.Context, i FetchDoneInfo) {
			r.add("fetch done %s %s attempts=%d status=%d %s mark=%v", i.Reason, i.Origin, i.Attempts, i.StatusCode, errText(i.Err), ctx.Value(ctxMark{}))
		},
		AttemptStart: func(ctx context.Context, i AttemptStartInfo) context.Context {
			r.add("attempt %d start mark=%v", i.Attempt, ctx.Value(ctxMark{}))
			return ctx
		},
		AttemptDone: func(ctx context.Context, i AttemptDoneInfo) {
			r.add("attempt %d done status=%d %s", i.Attempt, i.StatusCode, errText(i.Err))
		},
		Wait: func(ctx context.Context, i WaitInfo) {
			mark := any(nil)
			if i.Fetch != nil {
				mark = i.Fetch.Value(ctxMark{})
			}
			r.add("wait %s %s fetch=%v", i.Reason, errText(i.Err), mark)
			r.mu.Lock()
			r.waits = append(r.waits, i)
			r.mu.Unlock()
		},
		Invalidate: func(i InvalidateInfo) { r.add("invalidate applied=%v", i.Applied) },
		CacheError: func(i CacheErrorInfo) { r.add("cache error %s", i.Op) },
		Limits: func(i LimitsInfo) {
			r.add("limits status=%d rate=%v quotas=%v", i.StatusCode, i.RateLimit != nil, i.Quotas != nil)
		},
		Closed: func(ClosedInfo) { r.add("closed") },
	}
}

// TestObserverEvents: what an observer is told through a source's life:
// the first token, a refresh, retries, an invalidation, an expiry, a
// rate-limited invalidation, cache errors and Close.
func TestObserverEvents(t *testing.T) {
	e := newEndpoint(t)
	rec := &obsRecorder{}
	s, clk := testSource(t, e, func(c *Config) {
		c.Observer = rec.observer()
		c.Cache = failingCache{}
		c.HTTPClient = &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			rec.mu.Lock()
			rec.seen = append(rec.seen, r.Context().Value(ctxMark{}))
			rec.mu.Unlock()
			return http.DefaultTransport.RoundTrip(r)
		})}
	})
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
		w.Header().Set("X-RateLimit-Remaining", "9")
		if n == 3 || n == 4 {
			w.WriteHeader(503)
			return true
		}
		return false
	})
	step := func(name string, want []string, do func()) {
		t.Helper()
		do()
		waitBackground(s)
		if diff := cmp.Diff(want, rec.take()); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
	tok := func() {
		if _, err := s.Token(); err != nil {
			t.Fatal(err)
		}
	}
	step("first token", []string{
		"fetch start first",
		"cache error get",
		"attempt 1 start mark=fetch-1",
		"limits status=200 rate=true quotas=false",
		"attempt 1 done status=200 ok",
		"cache error set",
		"fetch done first endpoint attempts=1 status=200 ok mark=fetch-1",
		"wait first ok fetch=fetch-1",
	}, tok)
	step("fresh token: nothing", nil, tok)
	step("refresh", []string{
		"fetch start refresh",
		"cache error get",
		"attempt 1 start mark=fetch-2",
		"limits status=200 rate=true quotas=false",
		"attempt 1 done status=200 ok",
		"cache error set",
		"fetch done refresh endpoint attempts=1 status=200 ok mark=fetch-2",
	}, func() { clk.Advance(85 * time.Second); tok() })
	step("invalidation with retries", []string{
		"invalidate applied=true",
		"fetch start invalidated",
		"cache error get",
		"attempt 1 start mark=fetch-3",
		"limits status=503 rate=true quotas=false",
		"attempt 1 done status=503 503",
		"attempt 2 start mark=fetch-3",
		"limits status=503 rate=true quotas=false",
		"attempt 2 done status=503 503",
		"attempt 3 start mark=fetch-3",
		"limits status=200 rate=true quotas=false",
		"attempt 3 done status=200 ok",
		"cache error set",
		"fetch done invalidated endpoint attempts=3 status=200 ok mark=fetch-3",
		"wait invalidated ok fetch=fetch-3",
	}, func() {
		cur, _ := s.Token()
		s.Invalidate(cur)
		tok()
	})
	step("invalidation too soon", []string{"invalidate applied=false"}, func() {
		cur, _ := s.Token()
		s.Invalidate(cur)
		s.Invalidate(&oauth2.Token{AccessToken: "not the current one"}) // not told
	})
	step("expired", []string{
		"fetch start expired",
		"cache error get",
		"attempt 1 start mark=fetch-4",
		"limits status=200 rate=true quotas=false",
		"attempt 1 done status=200 ok",
		"cache error set",
		"fetch done expired endpoint attempts=1 status=200 ok mark=fetch-4",
		"wait expired ok fetch=fetch-4",
	}, func() { clk.Advance(time.Hour); tok() })
	step("close", []string{"closed"}, func() { s.Close() })

	rec.mu.Lock()
	defer rec.mu.Unlock()
	// Each token request ran in its attempt's context, inside its fetch's.
	if diff := cmp.Diff([]any{"fetch-1", "fetch-2", "fetch-3", "fetch-3", "fetch-3", "fetch-4"}, rec.seen); diff != "" {
		t.Errorf("request contexts (-want +got):\n%s", diff)
	}
	for _, w := range rec.waits {
		if w.Source != s || w.Duration < 0 {
			t.Errorf("wait %+v", w)
		}
	}
}

// failingCache fails every operation.
type failingCache struct{}

func (failingCache) Get(context.Context, string) (*Entry, error) {
	return nil, errors.New("cache down")
}
func (failingCache) Set(context.Context, string, *Entry) error { return errors.New("cache down") }

// TestObserverFailedFetchAndCacheOrigin: a failed fetch reports its
// attempts, status and error to the fetch and to every waiter; a token
// adopted from the cache has origin cache and no attempts.
func TestObserverFailedFetchAndCacheOrigin(t *testing.T) {
	e := newEndpoint(t)
	rec := &obsRecorder{}
	cache := NewMemoryCache()
	s, clk := testSource(t, e, func(c *Config) { c.Observer = rec.observer(); c.Cache = cache; c.MaxAttempts = 2 })
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool { w.WriteHeader(500); return true })
	if _, err := s.Token(); err == nil {
		t.Fatal("no error")
	}
	want := []string{
		"fetch start first",
		"attempt 1 start mark=fetch-1",
		"attempt 1 done status=500 500",
		"attempt 2 start mark=fetch-1",
		"attempt 2 done status=500 500",
		"fetch done first none attempts=2 status=500 500 mark=fetch-1",
		"wait first 500 fetch=fetch-1",
	}
	if diff := cmp.Diff(want, rec.take()); diff != "" {
		t.Errorf("failed fetch (-want +got):\n%s", diff)
	}
	// Another source stores a token; this one adopts it.
	e.setHandler(nil)
	other, err := newSource(s.c.cfg, clk)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.Token(); err != nil {
		t.Fatal(err)
	}
	rec.take()
	if _, err := s.Token(); err != nil {
		t.Fatal(err)
	}
	want = []string{
		"fetch start first",
		"fetch done first cache attempts=0 status=0 ok mark=fetch-3",
		"wait first ok fetch=fetch-3",
	}
	if diff := cmp.Diff(want, rec.take()); diff != "" {
		t.Errorf("adopted (-want +got):\n%s", diff)
	}
}

// TestObserverWaitersShareTheFetch: callers that waited on one fetch are
// each told, with that fetch's context; one whose context ends is told too.
func TestObserverWaitersShareTheFetch(t *testing.T) {
	e := newEndpoint(t)
	rec := &obsRecorder{}
	s, _ := testSource(t, e, func(c *Config) { c.Observer = rec.observer() })
	release := make(chan struct{})
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool { <-release; return false })
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() { defer wg.Done(); s.Token() }()
	}
	done := make(chan error)
	go func() { _, err := s.TokenContext(ctx); done <- err }()
	eventually(t, "six waiters", func() bool { return s.stats.joins.Load() == 6 && e.count() == 1 })
	cancel()
	if err := <-done; err == nil {
		t.Fatal("cancelled caller got a token")
	}
	close(release)
	wg.Wait()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var got []string
	for _, w := range rec.waits {
		got = append(got, fmt.Sprint(errText(w.Err), " ", w.Fetch.Value(ctxMark{})))
	}
	want := []string{"error fetch-1", "ok fetch-1", "ok fetch-1", "ok fetch-1", "ok fetch-1", "ok fetch-1"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("waits (-want +got):\n%s", diff)
	}
}

// TestObserverQuotaEvents: the quota headers reach the observer, and a
// fetch refused by an exhausted quota says so without a request.
func TestObserverQuotaEvents(t *testing.T) {
	rec := &obsRecorder{}
	s, _, iss := quotaSource(t, func(c *Config) { c.Observer = rec.observer() })
	iss.SetClientQuota("client-1", m2mtest.Quota{Bucket: "per_hour", Limit: 1})
	tok, _ := s.Token()
	s.Invalidate(tok)
	s.Token()
	s.Token()
	want := []string{
		"fetch start first",
		"attempt 1 start mark=fetch-1",
		"limits status=200 rate=false quotas=true",
		"attempt 1 done status=200 ok",
		"fetch done first endpoint attempts=1 status=200 ok mark=fetch-1",
		"wait first ok fetch=fetch-1",
		"invalidate applied=true",
		"fetch start invalidated",
		"attempt 1 start mark=fetch-2",
		"limits status=429 rate=false quotas=true",
		"attempt 1 done status=429 quota",
		"fetch done invalidated none attempts=1 status=429 quota mark=fetch-2",
		"wait invalidated quota fetch=fetch-2",
		"fetch start invalidated",
		"fetch done invalidated none attempts=0 status=0 quota mark=fetch-3",
		"wait invalidated quota fetch=fetch-3",
	}
	if diff := cmp.Diff(want, rec.take()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestObserverHotPath: with an observer, a fresh Token() still calls
// nothing and allocates nothing.
func TestObserverHotPath(t *testing.T) {
	e := newEndpoint(t)
	rec := &obsRecorder{}
	s, _ := testSource(t, e, func(c *Config) { c.Observer = rec.observer() })
	s.Token()
	rec.take()
	if n := testing.AllocsPerRun(1000, func() { s.Token() }); n != 0 {
		t.Errorf("%v allocations per Token()", n)
	}
	if ev := rec.take(); len(ev) != 0 {
		t.Errorf("hot path told the observer: %v", ev)
	}
}

// TestObserverNonceRetry: a DPoP nonce challenge at the token endpoint is
// told as an answer that asked for a nonce, and the request repeated with
// it as a nonce retry of the same attempt.
func TestObserverNonceRetry(t *testing.T) {
	iss := m2mtest.NewServer(m2mtest.Client{ID: "svc", Secret: "pw", Audiences: []string{"https://api.example.com/"}})
	defer iss.Close()
	iss.RequireDPoPNonce(true, false)
	var mu sync.Mutex
	var got []string
	var done FetchDoneInfo
	s, err := New(Config{TokenURL: iss.TokenURL(), ClientID: "svc", ClientSecret: "pw", Audience: "https://api.example.com/",
		DPoPKey: ecKey(t, elliptic.P256()),
		Observer: &Observer{
			AttemptDone: func(_ context.Context, i AttemptDoneInfo) {
				mu.Lock()
				got = append(got, fmt.Sprintf("attempt %d status=%d nonce_retry=%v nonce_required=%v", i.Attempt, i.StatusCode, i.NonceRetry, i.NonceRequired))
				mu.Unlock()
			},
			FetchDone: func(_ context.Context, i FetchDoneInfo) { done = i },
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Token(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"attempt 1 status=400 nonce_retry=false nonce_required=true",
		"attempt 1 status=200 nonce_retry=true nonce_required=false",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if done.Attempts != 2 || done.NonceRetries != 1 || done.Err != nil || done.StatusCode != 200 {
		t.Errorf("fetch done %+v", done)
	}
}

// TestObserverToldWhatFollows: each failed attempt tells whether the
// fetch retries, after how long, for how long at most, and of how many
// attempts; the last tells that nothing follows. (The m2mtoken command
// prints its retry lines from these.)
func TestObserverToldWhatFollows(t *testing.T) {
	e := newEndpoint(t)
	var mu sync.Mutex
	var got []string
	obs := &Observer{AttemptDone: func(_ context.Context, i AttemptDoneInfo) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, fmt.Sprintf("%d/%d %d retry=%v in %v for %v", i.Attempt, i.MaxAttempts, i.StatusCode, i.Retry, i.RetryDelay, i.RetryWindow))
	}}
	s, _ := testSource(t, e, func(c *Config) { c.MaxAttempts = 3; c.Observer = obs })
	s.c.rand = func() float64 { return 0.5 }
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
		switch n {
		case 1:
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(429)
		case 4:
			w.WriteHeader(400)
		default:
			w.WriteHeader(503)
		}
		return true
	})
	if _, err := s.Token(); err == nil {
		t.Fatal("a token")
	}
	// A permanent failure: no retry.
	s2, _ := testSource(t, e, func(c *Config) { c.Observer = obs })
	if _, err := s2.Token(); err == nil {
		t.Fatal("a token")
	}
	want := []string{
		"1/3 429 retry=true in 7s for 7s",       // Retry-After, longer than the backoffs left (250 ms + 500 ms)
		"2/3 503 retry=true in 250ms for 500ms", // half of the second backoff's 500 ms
		"3/3 503 retry=false in 0s for 0s",
		"1/8 400 retry=false in 0s for 0s",
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
