// The watcher, on a fake clock: when it checks, what it delivers, how it
// backs off.

package agent

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/internal/clock"
	"golang.org/x/oauth2"
)

// fakeSource hands out whatever token the test sets, and counts calls.
type fakeSource struct {
	mu    sync.Mutex
	tok   *oauth2.Token
	err   error
	calls int
	seen  chan struct{} // receives after each call
}

func (f *fakeSource) TokenContext(ctx context.Context) (*oauth2.Token, error) {
	select {
	case f.seen <- struct{}{}:
	case <-ctx.Done():
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return f.tok, f.err
}

func (f *fakeSource) Stats() m2mtoken.Stats { return m2mtoken.Stats{} }

func (f *fakeSource) set(tok *oauth2.Token, err error) {
	f.mu.Lock()
	f.tok, f.err = tok, err
	f.mu.Unlock()
}

func TestCheckInterval(t *testing.T) {
	for left, want := range map[time.Duration]time.Duration{
		24 * time.Hour: maxCheck, 2 * time.Second: 125 * time.Millisecond, 100 * time.Millisecond: minCheck, -time.Second: minCheck,
	} {
		if got := checkInterval(left); got != want {
			t.Errorf("checkInterval(%v) = %v, want %v", left, got, want)
		}
	}
}

// armingClock is a fake clock that reports each timer the watcher arms.
type armingClock struct {
	*clock.Fake
	armed chan time.Duration
}

func (c armingClock) AfterFunc(d time.Duration, f func()) clock.Timer {
	t := c.Fake.AfterFunc(d, f)
	c.armed <- d
	return t
}

// TestWatcher drives a watcher with a fake clock: it checks the source on
// the schedule checkInterval gives, delivers each new token once to the
// sinks, retries a failed delivery, and backs off while the source fails.
func TestWatcher(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := armingClock{clock.NewFake(start), make(chan time.Duration)}
	src := &fakeSource{seen: make(chan struct{})}
	src.set(&oauth2.Token{AccessToken: "one", Expiry: start.Add(160 * time.Second)}, nil)
	var mu sync.Mutex
	var delivered []string
	failNext := false
	w := newWatcher("default", src, clk, discardLog(), newOutage("default", clk, discardLog()), func(tok *oauth2.Token) error {
		mu.Lock()
		defer mu.Unlock()
		if failNext {
			failNext = false
			return errors.New("disk full")
		}
		delivered = append(delivered, tok.AccessToken)
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	// check waits for the watcher's next check and the timer it arms
	// after it, which must be want; then it lets that time pass.
	check := func(want time.Duration) {
		t.Helper()
		select {
		case <-src.seen:
		case <-time.After(10 * time.Second):
			t.Fatal("the watcher made no check")
		}
		select {
		case d := <-clk.armed:
			if d != want {
				t.Fatalf("next check in %v, want %v", d, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the watcher armed no timer")
		}
		clk.Advance(want)
	}
	check(10 * time.Second) // 160 s left: a sixteenth
	select {
	case <-w.ready:
	default:
		t.Fatal("not ready after the first token")
	}
	check(150 * time.Second / 16)

	// A new token is delivered once; a failed delivery is tried again at
	// the next check, at least a second later.
	mu.Lock()
	failNext = true
	mu.Unlock()
	tok2 := &oauth2.Token{AccessToken: "two", Expiry: start.Add(400 * time.Second)}
	src.set(tok2, nil)
	now := 10*time.Second + 150*time.Second/16
	check((400*time.Second - now) / 16)
	now += (400*time.Second - now) / 16
	check((400*time.Second - now) / 16)
	mu.Lock()
	got := strings.Join(delivered, ",")
	mu.Unlock()
	if got != "one,two" {
		t.Fatalf("delivered %q, want one,two", got)
	}
	if cur, _ := w.current(); cur != tok2 || w.seen() != 2 {
		t.Fatalf("current %v, seen %d", cur, w.seen())
	}

	// While the source fails, checks back off from a second, doubling.
	src.set(nil, errors.New("503"))
	now += (400*time.Second - now) / 16
	check(minRetry)
	check(2 * minRetry)
	if _, err := w.current(); err == nil || err.Error() != "503" {
		t.Fatalf("last error %v", err)
	}
	// The token it last saw is still reported until it expires.
	if cur, _ := w.current(); cur != tok2 {
		t.Fatalf("current %v", cur)
	}
	clk.Advance(400*time.Second - now)
	if cur, _ := w.current(); cur != nil {
		t.Fatalf("an expired token is current: %v", cur)
	}
}
