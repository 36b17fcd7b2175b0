package m2mtoken

// Tests of the TokenSource API itself: Invalidate and Close.

import (
	"errors"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

func TestInvalidateIsCompareAndSwap(t *testing.T) {
	e := newEndpoint(t)
	s, clk := testSource(t, e, nil)
	tok1, _ := s.Token()
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.Invalidate(tok1)
			if tok, err := s.Token(); err != nil || tok.AccessToken == "tok-1" {
				t.Errorf("after invalidate: %v %v", tok, err)
			}
		}()
	}
	wg.Wait()
	if e.count() != 2 {
		t.Fatalf("%d requests, want 2", e.count())
	}
	// A late invalidation of the old token leaves the new one alone.
	clk.Advance(time.Minute)
	s.Invalidate(tok1)
	s.Invalidate(&oauth2.Token{AccessToken: "tok-1"})
	if tok, _ := s.Token(); tok.AccessToken != "tok-2" {
		t.Fatalf("stale invalidation dropped %q", tok.AccessToken)
	}
}

func TestInvalidateIsRateLimited(t *testing.T) {
	e := newEndpoint(t)
	s, clk := testSource(t, e, nil)
	tok1, _ := s.Token()
	s.Invalidate(tok1)
	tok2, _ := s.Token()
	s.Invalidate(tok2) // too soon: ignored
	if tok, _ := s.Token(); tok.AccessToken != tok2.AccessToken {
		t.Fatalf("second invalidation within the interval took effect")
	}
	clk.Advance(31 * time.Second)
	s.Invalidate(tok2)
	if tok, _ := s.Token(); tok.AccessToken == tok2.AccessToken {
		t.Fatalf("invalidation after the interval ignored")
	}
}

func TestCloseStopsEverything(t *testing.T) {
	e := newEndpoint(t)
	s, clk := testSource(t, e, nil)
	s.Token()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Token(); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
	if clk.Pending() != 0 {
		t.Fatalf("%d timers left after Close", clk.Pending())
	}
}
