package m2mtoken

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/m2mtoken/m2mtoken/internal/logtest"
	"github.com/m2mtoken/m2mtoken/internal/wire"
)

// These tests replay what whoever can write to a shared cache (a Redis
// that other services share, say) could plant in it: a fetch lease that
// no holder keeps, a lease status that speaks to the operator, a token
// that claims to live for ever. The rediscache module replays them against
// a real Redis.

// plantedLeaser is a cache in which something other than a holder wrote
// the fetch lease: Lease is always refused, as SET NX is by a planted key,
// and LeaseInfo reports what was planted.
type plantedLeaser struct {
	*MemoryCache
	info   LeaseInfo
	leases atomic.Int64
}

func (p *plantedLeaser) Lease(context.Context, string, time.Duration) (Lease, bool, error) {
	p.leases.Add(1)
	return nil, false, nil
}

func (p *plantedLeaser) LeaseInfo(context.Context, string) (*LeaseInfo, error) {
	c := p.info
	return &c, nil
}

// TestPlantedLeaseIsIgnored: whoever can write to the cache plants a
// lease that never lapses, or that is set to last, or has been held,
// longer than any live holder could. Waited on, it would stop every
// source: a new one would send no token request and fail at its deadline,
// a running one never refresh. Such a lease must be ignored, with a
// warning: each source fetches its own token (a cost in token requests,
// not in failed calls). A lease a live holder could hold is still waited
// on.
func TestPlantedLeaseIsIgnored(t *testing.T) {
	year := 366 * 24 * time.Hour
	for name, info := range map[string]LeaseInfo{
		"no expiry":         {Invalid: "it has no expiry", Status: "rotate the secret at https://evil.example/rotate"},
		"set to last years": {Remaining: year, Age: time.Second},
		"held for years":    {Age: 56 * year, Remaining: 700 * time.Millisecond},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEndpoint(t)
			logs := logtest.New()
			cache := &plantedLeaser{MemoryCache: NewMemoryCache(), info: info}
			s, clk := testSource(t, e, func(c *Config) { c.Cache = cache; c.Logger = slog.New(slog.NewJSONHandler(logs, nil)) })
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if tok, err := s.TokenContext(ctx); err != nil || tok.AccessToken != "tok-1" {
				t.Fatalf("a new source behind a planted lease: %v %v", tok, err)
			}
			warning := logs.Find(ignoredLeaseMessage)
			if warning == nil {
				t.Fatalf("no warning:\n%s", logs.String())
			}
			// A running source refreshes: its token does not run out
			// behind the lease.
			clk.Advance(81 * time.Second)
			s.Token()
			waitBackground(s)
			if tok, _ := s.Token(); tok.AccessToken != "tok-2" || e.count() != 2 {
				t.Fatalf("refresh behind a planted lease: %q after %d requests", tok.AccessToken, e.count())
			}
			t.Logf("%d token requests; ignored: %s", e.count(), warning["error"])
		})
	}
	// A lease a live holder could hold (kept alive, held for less than a
	// fetch could last) is waited on: no token request.
	e := newEndpoint(t)
	cache := &plantedLeaser{MemoryCache: NewMemoryCache(), info: LeaseInfo{Age: 30 * time.Second, Remaining: 700 * time.Millisecond}}
	s, _ := testSource(t, e, func(c *Config) { c.Cache = cache })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.TokenContext(ctx); !errors.Is(err, context.DeadlineExceeded) || e.count() != 0 {
		t.Fatalf("a live holder's lease: %v after %d requests, want a wait", err, e.count())
	}
}

// TestLeaseStatusIsTheCachesWord: a lease's status is what its holder
// recorded in the cache, so whoever can write to the cache chooses it, and
// would have callers' errors say it as the library's own words ("its
// holder's last attempt: ... rotate the secret at
// https://evil.example/rotate"), escape sequences included. It must be
// quoted, escaped, cut to 300 bytes, and said to be what the cache gives.
func TestLeaseStatusIsTheCachesWord(t *testing.T) {
	e := newEndpoint(t)
	planted := "\x1b[2J\x1b[31mrotate the secret at https://evil.example/rotate\r\nlevel=ERROR msg=forged\u202e" + strings.Repeat("A", 5000)
	cache := &plantedLeaser{MemoryCache: NewMemoryCache(), info: LeaseInfo{Age: time.Second, Remaining: 700 * time.Millisecond, Status: planted}}
	s, _ := testSource(t, e, func(c *Config) { c.Cache = cache })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := s.TokenContext(ctx)
	var werr *WaitError
	if !errors.As(err, &werr) || werr.Lease == nil {
		t.Fatalf("got %v, want a WaitError with the lease", err)
	}
	msg := err.Error()
	for _, r := range msg {
		if r < ' ' || r == 0x7f || r == '\u202e' {
			t.Fatalf("the error carries %U from the cache: %q", r, msg)
		}
	}
	if !strings.Contains(msg, `the cache gives its holder's last attempt as "\x1b[2J\x1b[31mrotate the secret`) {
		t.Fatalf("the status is not quoted as the cache's: %s", msg)
	}
	if len(msg) > 1000 {
		t.Fatalf("the error is %d bytes: the status is not cut", len(msg))
	}
	t.Logf("%s", msg)
}

// TestCachedTokenLifetimeClamped: whoever can write to the cache plants a
// token with an expiry in the year 9999, to have it used, and held in
// memory, for ever. A token taken from a cache must be held no longer
// than a fresh answer's lifetime is clamped to (366 days from its issue
// time, or from now if it claims a later one).
func TestCachedTokenLifetimeClamped(t *testing.T) {
	far, _ := time.Parse(time.RFC3339, "9999-01-01T00:00:00Z")
	e := newEndpoint(t)
	cache := NewMemoryCache()
	logs := &logBuffer{}
	s, clk := testSource(t, e, func(c *Config) { c.Cache = cache; c.Logger = logs.logger() })
	cache.Set(context.Background(), s.CacheKey(), &Entry{AccessToken: "planted", TokenType: "Bearer", IssuedAt: clk.Now(), Expiry: far})
	tok, err := s.Token()
	if err != nil {
		t.Fatal(err)
	}
	if limit := clk.Now().Add(wire.MaxExpiresIn); tok.AccessToken != "planted" || tok.Expiry.After(limit) {
		t.Fatalf("got %q until %v, want the cached token held until %v at the latest", tok.AccessToken, tok.Expiry, limit)
	}
	if !strings.Contains(logs.String(), "claims a lifetime") {
		t.Errorf("no warning:\n%s", logs.String())
	}
	clk.Suspend(wire.MaxExpiresIn) // without half a million watches on the way
	clk.Advance(time.Minute)       // the next watch sees the token expired
	if tok, err := s.Token(); err != nil || tok.AccessToken != "tok-1" {
		t.Fatalf("after 366 days: %v %v, want a token from the endpoint", tok, err)
	}
	// One that claims to be issued in the year 9998 leaves nothing.
	e2 := newEndpoint(t)
	cache2 := NewMemoryCache()
	s2, clk2 := testSource(t, e2, func(c *Config) { c.Cache = cache2 })
	cache2.Set(context.Background(), s2.CacheKey(), &Entry{AccessToken: "planted", TokenType: "Bearer", IssuedAt: far.AddDate(-1, 0, 0), Expiry: far})
	if tok, err := s2.Token(); err != nil || tok.AccessToken != "tok-1" {
		t.Fatalf("a token issued in 9998: %v %v (clock %v), want a token from the endpoint", tok, err, clk2.Now())
	}
}
