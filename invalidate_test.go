package m2mtoken

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestInvalidationsBackOff runs a simulated day against an API that
// answers 401 with no challenge to every token (a wrong audience, or a
// local caller of the agent's proxy that can make the API refuse): at one
// invalidation per 30 s the source would fetch about 2,880 tokens a day,
// against Auth0's free 1,000 a month. Invalidations that keep getting
// 401 back must double their interval up to an hour (about 31 tokens in
// the day), say why in the log and in Stats, and start again at the base
// once the API is quiet.
func TestInvalidationsBackOff(t *testing.T) {
	e := newEndpoint(t)
	e.lifetime.Store(int64((48 * time.Hour).Seconds()))
	logs := &logBuffer{}
	s, clk := testSource(t, e, func(c *Config) { c.Logger = logs.logger() })
	var reject atomic.Bool
	reject.Store(true)
	a := newAPI(t, func(string) bool { return !reject.Load() })
	c := s.Client()
	get := func() int {
		resp, err := c.Get(a.URL)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	// A caller retries every 30 s for a day.
	for range 24 * 60 * 2 {
		get()
		clk.Advance(30 * time.Second)
	}
	tokens := e.count()
	t.Logf("tokens fetched in a day of 401s: %d", tokens)
	if tokens > 40 {
		t.Fatalf("%d tokens in a day of 401s; want the invalidations to back off to one an hour", tokens)
	}
	st := s.Stats()
	if st.InvalidateBackoff != time.Hour || !strings.Contains(st.InvalidateBackoffReason, "401") {
		t.Fatalf("Stats: backoff %v, reason %q", st.InvalidateBackoff, st.InvalidateBackoffReason)
	}
	t.Logf("Stats: backoff %v: %s", st.InvalidateBackoff, st.InvalidateBackoffReason)
	if !strings.Contains(logs.String(), "token invalidations back off") {
		t.Fatalf("no backoff in the log:\n%s", logs.String())
	}

	// The API takes tokens again; after a quiet spell, one revoked token
	// is replaced at once, at the base interval.
	reject.Store(false)
	if code := get(); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	clk.Advance(3 * time.Hour)
	before := e.count()
	reject.Store(true)
	get()
	reject.Store(false)
	if e.count() != before+1 {
		t.Fatalf("after a quiet spell, a 401 fetched %d tokens; want 1", e.count()-before)
	}
	if st := s.Stats(); st.InvalidateBackoff != 30*time.Second || st.InvalidateBackoffReason != "" {
		t.Fatalf("after a quiet spell: backoff %v, reason %q", st.InvalidateBackoff, st.InvalidateBackoffReason)
	}
}
