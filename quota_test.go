package m2mtoken

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/m2mtoken/m2mtoken/internal/clock"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// quotaSource returns a source on a fake clock talking to an m2mtest
// issuer that shares the clock.
func quotaSource(t *testing.T, mod func(*Config)) (*TokenSource, *clock.Fake, *m2mtest.Server) {
	t.Helper()
	iss := m2mtest.NewServer(m2mtest.Client{ID: "client-1", Secret: testSecret, Audiences: []string{"https://api.example.com/"}})
	t.Cleanup(iss.Close)
	s, clk := testSource(t, &endpoint{Server: &httptest.Server{URL: iss.URL}}, func(c *Config) {
		if mod != nil {
			mod(c)
		}
	})
	iss.SetClock(clk.Now)
	return s, clk, iss
}

// TestQuotasInStats: both quota headers become numbers in Stats, from 200
// and 429 answers alike, apart from the tenant-wide X-RateLimit-*.
func TestQuotasInStats(t *testing.T) {
	e := newEndpoint(t)
	s, _ := testSource(t, e, func(c *Config) { c.MaxAttempts = 2 })
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
		w.Header().Set("Auth0-Client-Quota-Limit", "b=per_hour;q=10;r=7;t=3540,b=per_day;q=100;r=93;t=86340")
		w.Header().Set("Auth0-Organization-Quota-Limit", "b=per_day;q=1000;r=10;t=60")
		if n == 1 {
			w.Header().Set("X-RateLimit-Limit", "30")
			w.Header().Set("X-RateLimit-Remaining", "0")
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(429)
			return true
		}
		return false
	})
	if _, err := s.Token(); err != nil {
		t.Fatal(err)
	}
	now := startTime().Add(time.Second) // after the Retry-After
	want := &Quotas{
		Client: []Quota{
			{Bucket: "per_hour", Limit: 10, Remaining: 7, Reset: now.Add(3540 * time.Second)},
			{Bucket: "per_day", Limit: 100, Remaining: 93, Reset: now.Add(86340 * time.Second)},
		},
		Organization: []Quota{{Bucket: "per_day", Limit: 1000, Remaining: 10, Reset: now.Add(time.Minute)}},
		At:           now,
	}
	st := s.Stats()
	if diff := cmp.Diff(want, st.Quotas); diff != "" {
		t.Errorf("quotas (-want +got):\n%s", diff)
	}
	// The 200 had no X-RateLimit-*: the 429's reading stays.
	if st.RateLimit == nil || st.RateLimit.Limit != 30 || !st.RateLimit.At.Equal(startTime()) {
		t.Errorf("rate limit %+v", st.RateLimit)
	}
}

// TestQuotaExhaustedFailsAtOnce: a 429 from a used-up quota is not
// retried; the error names the bucket, the quota and the reset; no request
// is sent until the bucket resets, and then one is.
func TestQuotaExhaustedFailsAtOnce(t *testing.T) {
	logs := &logBuffer{}
	s, clk, iss := quotaSource(t, func(c *Config) { c.Logger = logs.logger() })
	iss.SetClientQuota("client-1", m2mtest.Quota{Bucket: "per_hour", Limit: 1})
	tok, err := s.Token()
	if err != nil {
		t.Fatal(err)
	}
	if q := s.Stats().Quotas; q == nil || len(q.Client) != 1 || q.Client[0].Remaining != 0 || q.Client[0].Limit != 1 {
		t.Fatalf("quotas after the first token: %+v", q)
	}
	s.Invalidate(tok)
	_, err = s.Token()
	var qe *QuotaError
	if !errors.As(err, &qe) {
		t.Fatalf("got %v, want a *QuotaError", err)
	}
	reset := startTime().Add(time.Hour + time.Second)
	if qe.Scope != "client" || qe.Quota.Bucket != "per_hour" || qe.Quota.Limit != 1 || !qe.Quota.Reset.Equal(reset) {
		t.Errorf("quota error %+v", qe)
	}
	for _, want := range []string{"client quota exhausted", "per_hour allows 1 tokens", reset.Format(time.RFC3339), "429", "Client quota exceeded"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	var te *TokenError
	if !errors.As(err, &te) || te.StatusCode != 429 {
		t.Errorf("no 429 TokenError in %v", err)
	}
	if iss.Requests() != 2 || len(clk.Slept()) != 0 {
		t.Fatalf("%d requests, sleeps %v: want 2 and no retry", iss.Requests(), clk.Slept())
	}
	clk.Advance(30 * time.Minute)
	if _, err := s.Token(); !errors.As(err, &qe) || iss.Requests() != 2 {
		t.Fatalf("before the reset: %v, %d requests", err, iss.Requests())
	}
	if n := strings.Count(logs.String(), "quota exhausted; no token request until it resets"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, logs)
	}
	clk.Advance(30*time.Minute + time.Second)
	if _, err := s.Token(); err != nil || iss.Requests() != 3 {
		t.Fatalf("after the reset: %v, %d requests", err, iss.Requests())
	}
}

// TestRefreshWaitsForQuotaReset: a background refresh that meets a used-up
// quota waits for its reset (serving the current token) instead of trying
// every backoff step, and logs it once.
func TestRefreshWaitsForQuotaReset(t *testing.T) {
	logs := &logBuffer{}
	s, clk, iss := quotaSource(t, func(c *Config) { c.Logger = logs.logger(); c.MaxBackoff = 10 * time.Second })
	iss.SetTokenLifetime(1000 * time.Second) // stale at 800 s, unusable at 990 s
	iss.SetClientQuota("client-1", m2mtest.Quota{Bucket: "per_hour", Limit: 1, Period: 900 * time.Second})
	if _, err := s.Token(); err != nil {
		t.Fatal(err)
	}
	clk.Advance(800 * time.Second)
	for now := 800; now < 900; now += 5 {
		if tok, err := s.Token(); err != nil || tok == nil {
			t.Fatalf("at %d s: %v", now, err)
		}
		waitBackground(s)
		clk.Advance(5 * time.Second)
	}
	if iss.Requests() != 2 {
		t.Fatalf("%d requests before the reset, want 2 (one refresh)", iss.Requests())
	}
	clk.Advance(2 * time.Second) // the bucket resets at 900 s (+1 s)
	s.Token()
	waitBackground(s)
	if iss.Requests() != 3 || iss.TokensIssued("client-1") != 2 {
		t.Fatalf("after the reset: %d requests, %d tokens; want 3 and 2", iss.Requests(), iss.TokensIssued("client-1"))
	}
	if tok, _ := s.Token(); s.Stats().Expiry.Before(startTime().Add(1800 * time.Second)) {
		t.Errorf("not refreshed: %v expiry %v", tok, s.Stats().Expiry)
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 || !strings.Contains(logs.String(), "quota exhausted") {
		t.Errorf("%d warnings, want one about the quota:\n%s", n, logs)
	}
}

// TestQuotaExceededAnswerWithoutHeaders: Auth0's "quota exceeded" answer
// alone stops requests for its Retry-After.
func TestQuotaExceededAnswerWithoutHeaders(t *testing.T) {
	e := newEndpoint(t)
	s, clk := testSource(t, e, nil)
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
		if n == 1 {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Retry-After", "120")
			w.WriteHeader(429)
			w.Write([]byte(`{"error":"too_many_requests","error_description":"Organization quota exceeded"}`))
			return true
		}
		return false
	})
	_, err := s.Token()
	var qe *QuotaError
	if !errors.As(err, &qe) || qe.Scope != "organization" || qe.Quota.Bucket != "" || !qe.Quota.Reset.Equal(startTime().Add(121*time.Second)) {
		t.Fatalf("got %v (%+v)", err, qe)
	}
	clk.Advance(2 * time.Minute)
	if _, err := s.Token(); err == nil || e.count() != 1 {
		t.Fatalf("before Retry-After: %v, %d requests", err, e.count())
	}
	clk.Advance(time.Second)
	if _, err := s.Token(); err != nil || e.count() != 2 {
		t.Fatalf("after: %v, %d requests", err, e.count())
	}
}

// TestRateLimit429IsRetried: a 429 of the tenant-wide rate limit, with
// quota left, is retried as before.
func TestRateLimit429IsRetried(t *testing.T) {
	e := newEndpoint(t)
	s, _ := testSource(t, e, nil)
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
		w.Header().Set("Auth0-Client-Quota-Limit", "b=per_hour;q=10;r=7;t=3540")
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(429)
			w.Write([]byte(`{"error":"too_many_requests","error_description":"Global limit has been reached"}`))
			return true
		}
		return false
	})
	if _, err := s.Token(); err != nil || e.count() != 2 {
		t.Fatalf("%v, %d requests", err, e.count())
	}
}
