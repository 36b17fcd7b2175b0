package m2mtokenotel_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/m2mtest"
	"github.com/m2mtoken/m2mtoken/m2mtokenotel"
)

// TestFirstToken: one request, one token from the endpoint, one waiter;
// the fetch is a trace of its own linked to the caller's span, and the
// caller's span has a wait span linked to the fetch.
func TestFirstToken(t *testing.T) {
	h := newHarness(t, nil)
	caller, err := h.token()
	if err != nil {
		t.Fatal(err)
	}
	h.expect("m2mtoken.token.requests", "http.response.status_code=200,m2mtoken.outcome=success=1")
	h.expect("m2mtoken.tokens", "m2mtoken.origin=endpoint=1")
	h.expect("m2mtoken.fetch.duration", "m2mtoken.origin=endpoint,m2mtoken.outcome=success,m2mtoken.reason=first=1")
	h.expect("m2mtoken.waits", "m2mtoken.outcome=success,m2mtoken.reason=first=1")
	h.expect("m2mtoken.wait.duration", "m2mtoken.outcome=success,m2mtoken.reason=first=1")
	h.expect("m2mtoken.refreshes")
	if p := h.metric("m2mtoken.token.remaining_lifetime"); len(p) != 1 || p[0].value < 86000 || p[0].value > 86400 {
		t.Errorf("remaining lifetime %v, want about 86400 s", p)
	}

	fetches, attempts, waits := h.ended("m2mtoken.fetch"), h.ended("m2mtoken.token_request"), h.ended("m2mtoken.wait")
	if len(fetches) != 1 || len(attempts) != 1 || len(waits) != 1 {
		t.Fatalf("spans: %d fetch, %d token_request, %d wait", len(fetches), len(attempts), len(waits))
	}
	f, a, w := fetches[0], attempts[0], waits[0]
	if f.Parent().IsValid() || len(f.Links()) != 1 || f.Links()[0].SpanContext.SpanID() != caller.SpanID() {
		t.Errorf("fetch span: parent %v, links %v; want a new root linked to the caller", f.Parent(), f.Links())
	}
	if attr(f, m2mtokenotel.KeyReason) != "first" || attr(f, m2mtokenotel.KeyOrigin) != "endpoint" ||
		attr(f, m2mtokenotel.KeyAttempts) != "1" || attr(f, m2mtokenotel.KeyRetries) != "0" || f.Status().Code == codes.Error {
		t.Errorf("fetch span attributes %v status %v", f.Attributes(), f.Status())
	}
	if a.Parent().SpanID() != f.SpanContext().SpanID() || a.SpanKind() != trace.SpanKindClient || attr(a, m2mtokenotel.KeyStatusCode) != "200" {
		t.Errorf("token_request span: parent %v kind %v attrs %v", a.Parent(), a.SpanKind(), a.Attributes())
	}
	if w.Parent().SpanID() != caller.SpanID() || len(w.Links()) != 1 || w.Links()[0].SpanContext.SpanID() != f.SpanContext().SpanID() {
		t.Errorf("wait span: parent %v links %v; want the caller's child, linked to the fetch", w.Parent(), w.Links())
	}
	for _, s := range h.spans.Ended() {
		for _, kv := range s.Attributes() {
			if strings.Contains(kv.Value.String(), "eyJ") || strings.Contains(kv.Value.String(), "pw") && kv.Key != "http.request.method" {
				t.Errorf("span %s attribute %s looks secret: %q", s.Name(), kv.Key, kv.Value.String())
			}
		}
	}
}

// TestBackgroundRefresh: a stale token is refreshed in the background: a
// refresh counted, a second token, no caller waiting.
func TestBackgroundRefresh(t *testing.T) {
	h := newHarness(t, func(c *m2mtoken.Config) { c.RefreshJitter = -1 })
	h.iss.SetTokenLifetime(2 * time.Second) // stale after 1 s (half the lifetime at most)
	if _, err := h.token(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for h.iss.TokensIssued("svc") < 2 || h.src.Stats().BackgroundRefreshes < 1 || len(h.ended("m2mtoken.fetch")) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no refresh")
		}
		h.src.Token()
		time.Sleep(20 * time.Millisecond)
	}
	h.expect("m2mtoken.refreshes", "m2mtoken.outcome=success=1")
	h.expect("m2mtoken.tokens", "m2mtoken.origin=endpoint=2")
	h.expect("m2mtoken.fetch.duration",
		"m2mtoken.origin=endpoint,m2mtoken.outcome=success,m2mtoken.reason=first=1",
		"m2mtoken.origin=endpoint,m2mtoken.outcome=success,m2mtoken.reason=refresh=1")
	h.expect("m2mtoken.waits", "m2mtoken.outcome=success,m2mtoken.reason=first=1") // the first token only
	if f := h.ended("m2mtoken.fetch")[1]; attr(f, m2mtokenotel.KeyReason) != "refresh" || len(f.Links()) != 0 {
		t.Errorf("refresh span: %v, links %v", f.Attributes(), f.Links())
	}
}

// TestRetriesAndFailure: retried requests are counted by status, and the
// fetch span has one child per attempt with the errors recorded; a fetch
// that fails is an error span and a failed wait.
func TestRetriesAndFailure(t *testing.T) {
	h := newHarness(t, func(c *m2mtoken.Config) { c.MaxAttempts = 3 })
	h.iss.FailNext(2, m2mtest.Fault{Status: 503})
	if _, err := h.token(); err != nil {
		t.Fatal(err)
	}
	h.expect("m2mtoken.token.requests",
		"http.response.status_code=200,m2mtoken.outcome=success=1",
		"http.response.status_code=503,m2mtoken.outcome=failure=2")
	f := h.ended("m2mtoken.fetch")[0]
	if attr(f, m2mtokenotel.KeyAttempts) != "3" || attr(f, m2mtokenotel.KeyRetries) != "2" || f.Status().Code == codes.Error {
		t.Errorf("fetch span %v %v", f.Attributes(), f.Status())
	}
	var failed int
	for _, a := range h.ended("m2mtoken.token_request") {
		if a.Parent().SpanID() != f.SpanContext().SpanID() {
			t.Errorf("attempt %s not under the fetch", attr(a, m2mtokenotel.KeyAttempt))
		}
		if a.Status().Code == codes.Error && len(a.Events()) == 1 && a.Events()[0].Name == "exception" {
			failed++
		}
	}
	if failed != 2 {
		t.Errorf("%d attempt spans with a recorded error, want 2", failed)
	}

	// Now every attempt fails (a dropped connection has no status).
	h2 := newHarness(t, func(c *m2mtoken.Config) { c.MaxAttempts = 2 })
	h2.iss.FailNext(1, m2mtest.Fault{Status: 500})
	h2.iss.FailNext(1, m2mtest.Fault{Drop: true})
	if _, err := h2.token(); err == nil {
		t.Fatal("no error")
	}
	h2.expect("m2mtoken.token.requests", "http.response.status_code=500,m2mtoken.outcome=failure=1", "m2mtoken.outcome=failure=1")
	h2.expect("m2mtoken.fetch.duration", "m2mtoken.origin=none,m2mtoken.outcome=failure,m2mtoken.reason=first=1")
	h2.expect("m2mtoken.waits", "m2mtoken.outcome=failure,m2mtoken.reason=first=1")
	h2.expect("m2mtoken.tokens")
	if f := h2.ended("m2mtoken.fetch")[0]; f.Status().Code != codes.Error || attr(f, m2mtokenotel.KeyRetries) != "1" {
		t.Errorf("failed fetch span %v %v", f.Attributes(), f.Status())
	}
	if w := h2.ended("m2mtoken.wait")[0]; w.Status().Code != codes.Error {
		t.Errorf("wait span status %v", w.Status())
	}
}

// Test401Invalidation: an API's 401 through Client() invalidates the token
// and costs one fetch, reason "invalidated".
func Test401Invalidation(t *testing.T) {
	h := newHarness(t, nil)
	first := ""
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if first == "" {
			first = tok
		}
		if tok == first {
			w.WriteHeader(http.StatusUnauthorized) // revoked
			return
		}
		w.Write([]byte("ok"))
	}))
	defer api.Close()
	resp, err := h.src.Client().Get(api.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	h.expect("m2mtoken.invalidations", "m2mtoken.applied=true=1")
	h.expect("m2mtoken.waits", "m2mtoken.outcome=success,m2mtoken.reason=first=1", "m2mtoken.outcome=success,m2mtoken.reason=invalidated=1")
	h.expect("m2mtoken.fetch.duration",
		"m2mtoken.origin=endpoint,m2mtoken.outcome=success,m2mtoken.reason=first=1",
		"m2mtoken.origin=endpoint,m2mtoken.outcome=success,m2mtoken.reason=invalidated=1")
	h.expect("m2mtoken.tokens", "m2mtoken.origin=endpoint=2")
}

// TestQuotas: the quota headers become gauges per bucket; a used-up quota
// fails the fetch with its bucket on the span, and sends nothing more.
func TestQuotas(t *testing.T) {
	h := newHarness(t, func(c *m2mtoken.Config) { c.MinInvalidateInterval = -1 })
	h.iss.SetClientQuota("svc", m2mtest.Quota{Bucket: "per_hour", Limit: 2}, m2mtest.Quota{Bucket: "per_day", Limit: 100})
	tok, err := h.src.Token()
	if err != nil {
		t.Fatal(err)
	}
	h.expect("m2mtoken.quota.remaining",
		"m2mtoken.quota.bucket=per_day,m2mtoken.quota.scope=client=99",
		"m2mtoken.quota.bucket=per_hour,m2mtoken.quota.scope=client=1")
	h.expect("m2mtoken.quota.limit",
		"m2mtoken.quota.bucket=per_day,m2mtoken.quota.scope=client=100",
		"m2mtoken.quota.bucket=per_hour,m2mtoken.quota.scope=client=2")
	for range 2 {
		h.src.Invalidate(tok)
		tok, err = h.src.Token()
	}
	var qe *m2mtoken.QuotaError
	if !errors.As(err, &qe) || qe.Quota.Bucket != "per_hour" {
		t.Fatalf("got %v, want a QuotaError for per_hour", err)
	}
	if _, err := h.src.Token(); !errors.As(err, &qe) || h.iss.Requests() != 3 {
		t.Fatalf("again: %v after %d requests, want the QuotaError and no request", err, h.iss.Requests())
	}
	h.expect("m2mtoken.quota.remaining",
		"m2mtoken.quota.bucket=per_day,m2mtoken.quota.scope=client=98",
		"m2mtoken.quota.bucket=per_hour,m2mtoken.quota.scope=client=0")
	h.expect("m2mtoken.token.requests",
		"http.response.status_code=200,m2mtoken.outcome=success=2",
		"http.response.status_code=429,m2mtoken.outcome=failure=1")
	h.expect("m2mtoken.invalidations", "m2mtoken.applied=true=2")
	fetches := h.ended("m2mtoken.fetch")
	if len(fetches) != 4 {
		t.Fatalf("%d fetch spans, want 4", len(fetches))
	}
	for _, f := range fetches[2:] {
		if f.Status().Code != codes.Error || attr(f, m2mtokenotel.KeyQuotaBucket) != "per_hour" ||
			attr(f, m2mtokenotel.KeyQuotaScope) != "client" || attr(f, m2mtokenotel.KeyQuotaReset) == "" {
			t.Errorf("quota fetch span %v %v", f.Attributes(), f.Status())
		}
	}
	if attr(fetches[3], m2mtokenotel.KeyAttempts) != "0" {
		t.Errorf("blocked fetch made attempts: %v", fetches[3].Attributes())
	}
}

// TestClosedSourceLeavesGauges: a closed source is no longer observed.
func TestClosedSourceLeavesGauges(t *testing.T) {
	h := newHarness(t, nil)
	if _, err := h.src.Token(); err != nil {
		t.Fatal(err)
	}
	if len(h.metric("m2mtoken.token.remaining_lifetime")) != 1 {
		t.Fatal("no lifetime gauge")
	}
	h.src.Close()
	if p := h.metric("m2mtoken.token.remaining_lifetime"); len(p) != 0 {
		t.Errorf("closed source still observed: %v", p)
	}
}

type failingCache struct{}

func (failingCache) Get(context.Context, string) (*m2mtoken.Entry, error) {
	return nil, errors.New("cache down")
}
func (failingCache) Set(context.Context, string, *m2mtoken.Entry) error {
	return errors.New("cache down")
}

// TestCacheOriginAndErrors: a token another source stored is counted with
// origin cache and no request; a failing cache is counted per operation.
func TestCacheOriginAndErrors(t *testing.T) {
	cache := m2mtoken.NewMemoryCache()
	h := newHarness(t, func(c *m2mtoken.Config) { c.Cache = cache })
	other, err := m2mtoken.New(m2mtoken.Config{TokenURL: h.iss.TokenURL(), ClientID: "svc", ClientSecret: "pw", Audience: audience, Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.Token(); err != nil {
		t.Fatal(err)
	}
	if _, err := h.token(); err != nil {
		t.Fatal(err)
	}
	h.expect("m2mtoken.tokens", "m2mtoken.origin=cache=1")
	h.expect("m2mtoken.token.requests")
	h.expect("m2mtoken.fetch.duration", "m2mtoken.origin=cache,m2mtoken.outcome=success,m2mtoken.reason=first=1")
	if f := h.ended("m2mtoken.fetch")[0]; attr(f, m2mtokenotel.KeyOrigin) != "cache" || attr(f, m2mtokenotel.KeyAttempts) != "0" {
		t.Errorf("fetch span %v", f.Attributes())
	}

	h2 := newHarness(t, func(c *m2mtoken.Config) { c.Cache = failingCache{} })
	if _, err := h2.token(); err != nil {
		t.Fatal(err)
	}
	h2.expect("m2mtoken.cache.errors", "m2mtoken.cache.operation=get=1", "m2mtoken.cache.operation=set=1")
	h2.expect("m2mtoken.tokens", "m2mtoken.origin=endpoint=1")
}

// TestDPoPNonceRetry: the token endpoint's nonce challenge is counted as
// nonce_required, not a failure, and the fetch span counts it as a nonce
// retry, not a retry.
func TestDPoPNonceRetry(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, func(c *m2mtoken.Config) { c.DPoPKey = key })
	h.iss.RequireDPoPNonce(true, false)
	if _, err := h.token(); err != nil {
		t.Fatal(err)
	}
	h.expect("m2mtoken.token.requests",
		"http.response.status_code=200,m2mtoken.outcome=success=1",
		"http.response.status_code=400,m2mtoken.outcome=nonce_required=1")
	f := h.ended("m2mtoken.fetch")[0]
	if attr(f, m2mtokenotel.KeyAttempts) != "2" || attr(f, m2mtokenotel.KeyNonceRetries) != "1" || attr(f, m2mtokenotel.KeyRetries) != "0" {
		t.Errorf("fetch span %v", f.Attributes())
	}
	var retried bool
	for _, a := range h.ended("m2mtoken.token_request") {
		if a.Status().Code == codes.Error {
			t.Errorf("attempt span with an error: %v", a.Attributes())
		}
		retried = retried || attr(a, m2mtokenotel.KeyNonceRetry) == "true"
	}
	if !retried {
		t.Error("no attempt span says nonce_retry")
	}
}
