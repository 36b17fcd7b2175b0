package m2mtoken

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// unreadableLeaser is a memLeaser whose Get fails while down is set: a
// store that still grants (or withholds) the lease but cannot read the
// token.
type unreadableLeaser struct {
	*memLeaser
	down atomic.Bool
	gets atomic.Int64
}

func (u *unreadableLeaser) Get(ctx context.Context, key string) (*Entry, error) {
	u.gets.Add(1)
	if u.down.Load() {
		return nil, errors.New("no answer within 250ms")
	}
	return u.memLeaser.Get(ctx, key)
}

// TestCacheGetOutageLoggedOnce: while Get fails, the warning is logged
// once; when Get answers again, one line says how many failed.
func TestCacheGetOutageLoggedOnce(t *testing.T) {
	s, clk := testSource(t, newEndpoint(t), nil)
	var logs logBuffer
	s.log = logs.logger()
	u := &unreadableLeaser{memLeaser: newMemLeaser(clk.Now)}
	s.c.cache = u
	ctx := context.Background()
	for round := 1; round <= 2; round++ {
		u.down.Store(true)
		for i := 0; i < 5; i++ {
			s.adopt(ctx, s.CacheKey(), nil)
			clk.Advance(time.Second)
		}
		u.down.Store(false)
		s.adopt(ctx, s.CacheKey(), nil)
		s.adopt(ctx, s.CacheKey(), nil)
		out := logs.String()
		if n := strings.Count(out, "level=WARN msg=\"cache get failed"); n != round {
			t.Fatalf("outage %d: the warning logged %d times in all, want once per outage:\n%s", round, n, out)
		}
		if n := strings.Count(out, `msg="cache get works again" failures=5 after=5s`); n != round {
			t.Fatalf("outage %d: %d lines saying Get works again after 5 failures in 5s:\n%s", round, n, out)
		}
	}
}

// TestWaiterFetchesWhenTheCacheCannotReadTheToken: another, live
// instance keeps the fetch lease, but this source's Get fails, so the
// holder's token could not reach it. A refresh stops waiting halfway
// through its token's stale window, as with a failing lease, and fetches;
// a source without a usable token fetches at once. A waiter whose Get
// works keeps waiting for the holder (TestWaitErrorSaysAnotherInstance
// HoldsTheLease).
func TestWaiterFetchesWhenTheCacheCannotReadTheToken(t *testing.T) {
	e := newEndpoint(t)
	s, clk := testSource(t, e, nil)
	if _, err := s.Token(); err != nil {
		t.Fatal(err)
	}
	u := &unreadableLeaser{memLeaser: newMemLeaser(clk.Now)}
	s.c.cache = u
	s.c.cfg.LeaseTTL = time.Second
	u.holdAlive(time.Second, "")
	u.down.Store(true)
	clk.Advance(81 * time.Second) // stale at 80 s, unusable at 95 s: halfway at 87.5 s
	s.Token()
	waitBackground(s)
	if tok, _ := s.Token(); tok.AccessToken != "tok-2" {
		t.Fatalf("got %q; want the token the waiter fetched itself", tok.AccessToken)
	}
	if el := clk.Now().Sub(startTime()); el < 87*time.Second || el > 89*time.Second {
		t.Fatalf("fetched %v after start; want halfway through the stale window (87.5s)", el)
	}

	// No usable token: at once.
	fresh, clk2 := testSource(t, e, nil)
	u2 := &unreadableLeaser{memLeaser: newMemLeaser(clk2.Now)}
	fresh.c.cache = u2
	fresh.c.cfg.LeaseTTL = time.Second
	u2.holdAlive(time.Second, "")
	u2.down.Store(true)
	if _, err := fresh.Token(); err != nil {
		t.Fatal(err)
	}
	if waited := clk2.Now().Sub(startTime()); waited > 0 {
		t.Fatalf("a source without a token waited %v on a lease for a token its cache cannot read", waited)
	}
}
