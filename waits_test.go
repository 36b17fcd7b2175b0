package m2mtoken

import (
	"sync"
	"testing"
	"time"
)

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
