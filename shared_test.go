package m2mtoken

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// memLeaser is a Leaser in memory, on the test's fake clock, that records
// what the holder did; another (simulated) instance can hold the lease.
type memLeaser struct {
	*MemoryCache
	mu       sync.Mutex
	now      func() time.Time
	holder   string // "" free
	until    time.Time
	since    time.Time
	status   string
	alive    time.Duration // the other holder keeps its lease alive for this long
	keeps    []string
	released int
	next     int
}

func newMemLeaser(now func() time.Time) *memLeaser {
	return &memLeaser{MemoryCache: NewMemoryCache(), now: now}
}

// held reports whether someone holds the lease now. The other instance's
// lease, when it is alive, is kept alive at every look, as a live holder's
// keeper would: however far the fake clock moves, it lapses only once the
// test says that instance died. Its fetches end within a minute (the
// default FetchTimeout), as a live holder's do, and it takes the lease
// anew for the next.
func (m *memLeaser) held() bool {
	if m.holder == "other" && m.alive > 0 {
		m.until = m.now().Add(m.alive)
		if m.now().Sub(m.since) >= time.Minute {
			m.since = m.now()
		}
	}
	return m.holder != "" && m.now().Before(m.until)
}

func (m *memLeaser) Lease(_ context.Context, _ string, ttl time.Duration) (Lease, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.held() {
		return nil, false, nil
	}
	m.next++
	id := "h" + string(rune('0'+m.next))
	m.holder, m.until, m.since, m.status = id, m.now().Add(ttl), m.now(), ""
	return &memLease{m: m, id: id}, true, nil
}

// takeFor makes another instance the holder for ttl, with status; nobody
// keeps that lease alive.
func (m *memLeaser) takeFor(ttl time.Duration, status string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.holder, m.until, m.since, m.status, m.alive = "other", m.now().Add(ttl), m.now(), status, 0
}

// holdAlive makes another, live instance the holder, keeping its lease of
// ttl alive until takeFor or its release ends it.
func (m *memLeaser) holdAlive(ttl time.Duration, status string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.holder, m.until, m.since, m.status, m.alive = "other", m.now().Add(ttl), m.now(), status, ttl
}

func (m *memLeaser) LeaseInfo(context.Context, string) (*LeaseInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.held() {
		return nil, nil
	}
	return &LeaseInfo{Age: m.now().Sub(m.since), Remaining: m.until.Sub(m.now()), Status: m.status}, nil
}

type memLease struct {
	m  *memLeaser
	id string
}

func (l *memLease) Keep(_ context.Context, ttl time.Duration, status string) (bool, error) {
	m := l.m
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keeps = append(m.keeps, status)
	if !m.held() || m.holder != l.id {
		return false, nil
	}
	m.until, m.status = m.now().Add(ttl), status
	return true, nil
}

func (l *memLease) Release(context.Context) error {
	m := l.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.holder == l.id {
		m.holder = ""
		m.released++
	}
	return nil
}

// TestNewSourceAdoptsUsableSharedToken: a source with no token takes a
// stale but usable token from the cache at once, with no token request,
// and the next call refreshes it in the background.
func TestNewSourceAdoptsUsableSharedToken(t *testing.T) {
	e := newEndpoint(t)
	cache := NewMemoryCache()
	a, clk := testSource(t, e, func(c *Config) { c.Cache = cache })
	if _, err := a.Token(); err != nil {
		t.Fatal(err)
	}
	clk.Advance(90 * time.Second) // stale (80 s), usable until 95 s
	b, err := newSource(a.c.cfg, clk)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.c.rand = a.c.rand
	tok, err := b.Token()
	if err != nil || tok.AccessToken != "tok-1" || e.count() != 1 {
		t.Fatalf("new source got %v %v after %d requests; want the shared tok-1 and no request", tok, err, e.count())
	}
	if st := b.Stats(); st.CacheHits != 1 || st.BackgroundRefreshes != 0 {
		t.Fatalf("stats %+v", st)
	}
	// The next call sees it stale and refreshes it in the background.
	if tok, _ := b.Token(); tok.AccessToken != "tok-1" {
		t.Fatalf("second call: %q", tok.AccessToken)
	}
	waitBackground(b)
	if tok, _ := b.Token(); tok.AccessToken != "tok-2" || b.Stats().BackgroundRefreshes != 1 {
		t.Fatalf("after refresh: %q, stats %+v", tok.AccessToken, b.Stats())
	}
	// A refresh does not end on a stale token: a's own refresh takes b's
	// fresh tok-2 from the cache, not its own stale token back.
	a.Token()
	waitBackground(a)
	if tok, _ := a.Token(); tok.AccessToken != "tok-2" || e.count() != 2 {
		t.Fatalf("a has %q after %d requests", tok.AccessToken, e.count())
	}
}

// TestLeaseKeptAliveWhileFetching: the holder keeps its lease every third
// of LeaseTTL while its fetch runs, with its last failed attempt as the
// status, and releases it at the end.
func TestLeaseKeptAliveWhileFetching(t *testing.T) {
	e := newEndpoint(t)
	gate := make(chan struct{})
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
		if n == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return true
		}
		<-gate
		return false
	})
	var k *memLeaser
	s, clk := testSource(t, e, func(c *Config) {})
	k = newMemLeaser(clk.Now)
	s.c.cache = k
	s.c.cfg.LeaseTTL = 900 * time.Millisecond
	done := make(chan error, 1)
	go func() { _, err := s.Token(); done <- err }()
	eventually(t, "the second attempt", func() bool { return e.count() == 2 })
	for i := 0; i < 5; i++ {
		clk.Advance(300 * time.Millisecond)
	}
	k.mu.Lock()
	keeps := append([]string(nil), k.keeps...)
	stillHeld := k.held()
	k.mu.Unlock()
	if len(keeps) < 5 || !stillHeld {
		t.Fatalf("%d keeps over 1.5 s of a 900ms lease (held: %v), want one every 300ms", len(keeps), stillHeld)
	}
	if !strings.Contains(keeps[len(keeps)-1], "503") {
		t.Errorf("status %q does not carry the failed attempt", keeps[len(keeps)-1])
	}
	close(gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if k.released != 1 {
		t.Fatalf("lease released %d times", k.released)
	}
	n := len(k.keeps)
	clk.Advance(time.Second)
	if len(k.keeps) != n {
		t.Fatal("the lease was kept after its release")
	}
}

// TestWaitErrorSaysAnotherInstanceHoldsTheLease: a caller that gives up
// while another instance holds the lease learns so, with its status.
func TestWaitErrorSaysAnotherInstanceHoldsTheLease(t *testing.T) {
	e := newEndpoint(t)
	s, clk := testSource(t, e, nil)
	k := newMemLeaser(clk.Now)
	s.c.cache = k
	s.c.cfg.LeaseTTL = time.Second
	// A live holder: its lease is kept alive however far the fake clock
	// runs while this source polls (the fake clock's Sleep advances it), so
	// the caller's real-time deadline, not the speed of the polls, ends the
	// wait.
	k.holdAlive(time.Second, "m2mtoken: token request to https://x/oauth/token failed: EOF")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := s.TokenContext(ctx)
	var werr *WaitError
	if !errors.As(err, &werr) || werr.Lease == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want a WaitError with the lease", err)
	}
	for _, want := range []string{"another instance holds the fleet's fetch lease", "held for", "left unless kept alive", "failed: EOF"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
	if e.count() != 0 {
		t.Fatalf("%d token requests while another instance held the lease", e.count())
	}
	// Its holder dies: the lease lapses and this source fetches.
	k.takeFor(time.Second, "")
	clk.Advance(2 * time.Second)
	if tok, err := s.Token(); err != nil || tok.AccessToken != "tok-1" {
		t.Fatalf("after the holder died: %v %v", tok, err)
	}
}

// TestWaiterTakesOverALeaseNobodyKeeps: another instance took the lease
// and died mid-fetch, so nobody keeps it. A refresh waiting on it takes
// it over as it lapses, within LeaseTTL, and fetches, long before its own
// token would become unusable. (This was the plain lease's test: a waiter
// on a lease that cannot tell a dead holder from a slow one gave up only
// when its token was about to become unusable.)
func TestWaiterTakesOverALeaseNobodyKeeps(t *testing.T) {
	e := newEndpoint(t)
	s, clk := testSource(t, e, nil)
	if s.c.cfg.LeaseTTL != 750*time.Millisecond {
		t.Fatalf("default LeaseTTL %v, want 750ms", s.c.cfg.LeaseTTL)
	}
	if _, err := s.Token(); err != nil {
		t.Fatal(err)
	}
	k := newMemLeaser(clk.Now)
	s.c.cache = k
	clk.Advance(81 * time.Second) // stale; unusable at 95 s
	k.takeFor(750*time.Millisecond, "")
	s.Token()
	waitBackground(s)
	if tok, _ := s.Token(); tok.AccessToken != "tok-2" || e.count() != 2 {
		t.Fatalf("got %q after %d requests; want the token the waiter fetched itself", tok.AccessToken, e.count())
	}
	if el := clk.Now().Sub(startTime()); el < 81750*time.Millisecond || el > 83*time.Second {
		t.Fatalf("the waiter fetched %v after start; want as the dead holder's lease lapsed (81.75s)", el)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.holder != "" || k.released != 1 {
		t.Fatalf("lease held by %q, released %d times; want taken over, then released once", k.holder, k.released)
	}
}

// flakyLeaser fails Lease its first fails calls, then grants it.
type flakyLeaser struct {
	*MemoryCache
	mu           sync.Mutex
	fails, calls int
	granted      int
	now          func() time.Time
	firstGrant   time.Time
}

func (f *flakyLeaser) Lease(context.Context, string, time.Duration) (Lease, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.calls <= f.fails {
		return nil, false, errors.New("no answer within 250ms")
	}
	f.granted++
	if f.firstGrant.IsZero() {
		f.firstGrant = f.now()
	}
	return idleLease{}, true, nil
}

func (f *flakyLeaser) LeaseInfo(context.Context, string) (*LeaseInfo, error) { return nil, nil }

// idleLease is a lease that needs no keeping.
type idleLease struct{}

func (idleLease) Keep(context.Context, time.Duration, string) (bool, error) { return true, nil }
func (idleLease) Release(context.Context) error                             { return nil }

// TestRefreshRidesOutAFailingLease: a refresh whose lease fails tries it
// again while its token is usable, and fetches without it only halfway
// through its stale window; a lease that recovers is used.
func TestRefreshRidesOutAFailingLease(t *testing.T) {
	for _, tc := range []struct {
		fails   int
		granted int
	}{{fails: 3, granted: 1}, {fails: 1 << 30, granted: 0}} {
		e := newEndpoint(t)
		s, clk := testSource(t, e, nil)
		fl := &flakyLeaser{MemoryCache: NewMemoryCache(), fails: tc.fails, now: clk.Now}
		if _, err := s.Token(); err != nil {
			t.Fatal(err)
		}
		s.c.cache = fl
		clk.Advance(81 * time.Second) // stale at 80 s, unusable at 95 s: patience until 87.5 s
		s.Token()
		waitBackground(s)
		if tok, _ := s.Token(); tok.AccessToken != "tok-2" {
			t.Fatalf("fails %d: got %q", tc.fails, tok.AccessToken)
		}
		fl.mu.Lock()
		calls, granted := fl.calls, fl.granted
		fl.mu.Unlock()
		if granted != tc.granted {
			t.Fatalf("fails %d: lease granted %d times after %d tries, want %d", tc.fails, granted, calls, tc.granted)
		}
		if el := clk.Now().Sub(startTime()); tc.granted == 0 && (el < 87*time.Second || el > 89*time.Second) {
			t.Fatalf("fetched without the lease %v after start; want halfway through the stale window (87.5s)", el)
		}
	}
}

// TestSlowEndpointRefreshesEarlier: the time the endpoint took is kept
// with the token, and the default refresh window makes room for a refresh
// and a takeover: with 5-second tokens from an endpoint that takes 1.5 s,
// refreshing 1 s before expiry (a fifth of the lifetime) would leave every
// caller waiting at each refresh.
func TestSlowEndpointRefreshesEarlier(t *testing.T) {
	e := newEndpoint(t)
	e.lifetime.Store(5)
	cache := NewMemoryCache()
	s, clk := testSource(t, e, func(c *Config) { c.Cache = cache })
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
		clk.Advance(1500 * time.Millisecond)
		return false
	})
	if _, err := s.Token(); err != nil {
		t.Fatal(err)
	}
	cur := s.cur.Load()
	if cur.entry.Latency != 1500*time.Millisecond {
		t.Fatalf("latency %v, want 1.5s", cur.entry.Latency)
	}
	if w := cur.entry.Expiry.Sub(cur.staleAt); w != 2500*time.Millisecond {
		t.Fatalf("refresh window %v, want 2.5s (skew + twice the latency, capped at half the lifetime)", w)
	}
	stored, _ := cache.Get(context.Background(), s.CacheKey())
	if stored.Latency != cur.entry.Latency {
		t.Fatal("the latency is not stored with the token")
	}
	// A set RefreshWindow is kept.
	s2, _ := testSource(t, e, func(c *Config) { c.RefreshWindow = time.Second })
	if w := s2.newHeld(stored, nil).entry.Expiry.Sub(s2.newHeld(stored, nil).staleAt); w != time.Second {
		t.Fatalf("set window %v, want 1s", w)
	}
}

func TestSharedCacheAdoption(t *testing.T) {
	e := newEndpoint(t)
	cache := NewMemoryCache()
	a, clk := testSource(t, e, func(c *Config) { c.Cache = cache })
	b, err := newSource(a.c.cfg, clk)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.c.rand = a.c.rand
	ta, _ := a.Token()
	tb, _ := b.Token()
	if ta.AccessToken != tb.AccessToken || e.count() != 1 || b.Stats().CacheHits != 1 {
		t.Fatalf("b did not adopt a's token: %q %q, %d requests", ta.AccessToken, tb.AccessToken, e.count())
	}
	// a refreshes first; b's refresh adopts a's new token instead of asking.
	clk.Advance(85 * time.Second)
	a.Token()
	waitBackground(a)
	b.Token()
	waitBackground(b)
	if tb, _ := b.Token(); tb.AccessToken != "tok-2" || e.count() != 2 {
		t.Fatalf("b has %q after %d requests, want tok-2 after 2", tb.AccessToken, e.count())
	}
	// Every holder computes the same windows from the original lifetime.
	if a.cur.Load().staleAt != b.cur.Load().staleAt {
		t.Fatal("holders disagree on the refresh window")
	}
}

func TestInvalidatedTokenNotReadoptedFromCache(t *testing.T) {
	e := newEndpoint(t)
	s, _ := testSource(t, e, func(c *Config) { c.Cache = NewMemoryCache() })
	tok1, _ := s.Token()
	s.Invalidate(tok1)
	if tok, _ := s.Token(); tok.AccessToken == "tok-1" {
		t.Fatal("invalidated token taken back from the cache")
	}
}
