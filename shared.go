// How a source uses Config.Cache when it needs a token: adopting one that
// another holder stored, and taking the cache's fetch lease (kept alive
// while it fetches, when the cache is a Leaser) so that one holder in a
// fleet fetches for all.

package m2mtoken

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/m2mtoken/m2mtoken/internal/printable"
	"github.com/m2mtoken/m2mtoken/internal/wire"
)

// defaultLeaseTTL is the default Config.LeaseTTL: short, as its holder
// keeps the lease alive, so that a dead holder is noticed within about a
// second.
const defaultLeaseTTL = 750 * time.Millisecond

// adopt installs the cache's token if it is newer than the current one,
// not the token last invalidated, and fresh; or, when the source has no
// usable token at all (a new process, or one whose token expired), merely
// usable: a stale token is handed out at once and refreshed in the
// background by the first call that sees it, as any stale token is.
func (s *TokenSource) adopt(ctx context.Context, key string, cv *certValue) *heldToken {
	ce, err := s.c.cache.Get(ctx, key)
	if err != nil {
		if ctx.Err() != nil {
			return nil // the fetch gave up, or the source closed: no news about the cache
		}
		s.gets.failed(err, s.c.clock.Now(), s.log)
		s.c.obs.cacheError(s, "get", err)
		return nil
	}
	s.gets.answered(s.c.clock.Now(), s.log)
	if !ce.Valid() || !s.c.usableType(ce.TokenType) {
		return nil
	}
	if x5t := certBinding(ce); cv != nil && x5t != "" && x5t != cv.thumb {
		s.log.Warn("a token in the cache is bound to another client certificate than this client's; it is not taken (has something else written to the cache?)",
			slog.String("token", Fingerprint(ce.AccessToken)), slog.String("certificate", cv.thumb))
		return nil
	}
	now := s.c.clock.Now()
	if c := clampLifetime(ce, now); c != ce {
		s.log.Warn("a token in the cache claims a lifetime longer than any answer's (366 days); it is held no longer than that (has something else written to the cache?)",
			slog.String("token", Fingerprint(ce.AccessToken)), slog.Time("claimed_expiry", ce.Expiry), slog.Time("expiry", c.Expiry))
		if ce = c; !ce.Valid() {
			return nil
		}
	}
	cur := s.cur.Load()
	if cur != nil && cur.at(now) == stateExpired {
		cur = nil
	}
	if cur != nil && !ce.Expiry.After(cur.entry.Expiry) {
		return nil
	}
	if s.wasInvalidated(ce.AccessToken) {
		return nil
	}
	h := s.newHeld(ce, cv)
	switch h.at(now) {
	case stateFresh:
	case stateStale:
		if cur != nil {
			return nil // a refresh: only a fresh token ends it
		}
	default:
		return nil
	}
	if !s.install(h) {
		return nil
	}
	s.stats.cacheHits.Add(1)
	s.log.Debug("token taken from cache", slog.String("token", Fingerprint(ce.AccessToken)), slog.Time("expiry", ce.Expiry))
	return h
}

// clampLifetime returns e, or a copy of it whose expiry is cut to what a
// fresh answer's lifetime is clamped to: [wire.MaxExpiresIn] after its
// issue time, or after now if it claims a later issue time. A cache holds
// whatever its writers wrote; a token taken from it is held no longer
// than one from the endpoint. The copy is not Valid if nothing is left.
func clampLifetime(e *Entry, now time.Time) *Entry {
	issued := e.IssuedAt
	if now = now.Round(0); issued.After(now) {
		issued = now
	}
	limit := issued.Add(wire.MaxExpiresIn)
	if !e.Expiry.After(limit) {
		return e
	}
	c := *e
	c.Expiry = limit
	return &c
}

// lease waits for the cache's fetch lease. It returns the release function
// if this source should fetch (with the lease, or without it: a nil
// function), or the token another holder stored while it waited. A cache
// error means: fetch without the lease, at once if the source has no usable
// token, else once half of its token's stale window has passed.
//
// While another holder has the lease, the source polls the cache for its
// token, and publishes what it knows of that holder for the callers that
// give up waiting (see [WaitError]). The lease is waited on as long as it
// is kept: its holder is alive and fetching, and a second fetch would be
// answered no sooner. A holder that died stops keeping its lease, which
// lapses within the TTL: the next try takes it (a poll comes just as the
// lease's Remaining runs out), and this source fetches. A lease that no
// live holder could have left (see implausibleLease) is not waited on:
// the source fetches without it.
//
// A holder that is slow is told from a cache that lost the token by the
// waiter's own reads: while the cache's Get fails, the holder's token would
// not reach the waiter even once stored, and a lease the cache can still
// grant holds nobody up for long. Such a waiter fetches without the lease:
// at once without a usable token, as with a failing lease; else halfway
// through its token's stale window (which leaves it the time of one fetch),
// or once it has waited two fetches by the endpoint's last latency if that
// is later (a corrupt value that a live holder overwrites is not a lost
// token), and before the token becomes unusable at the latest.
func (s *TokenSource) lease(ctx context.Context, l Leaser, key string, cv *certValue) (func(), *heldToken, error) {
	ttl := s.c.cfg.LeaseTTL
	start := s.c.clock.Now()
	maxWait := max(ttl/5, 10*time.Millisecond)
	// A refresh (the source has a usable token) rides out a cache that
	// fails for a while: it tries the lease again until half of its
	// token's stale window has passed, and only then fetches without it,
	// so that a Redis hiccup does not make the whole fleet fetch at once.
	var patience time.Time
	if cur := s.cur.Load(); cur != nil {
		patience = cur.staleAt.Add(cur.unusableAt.Sub(cur.staleAt) / 2)
	}
	lostAt := lostTokenAt(s.cur.Load(), start) // while Get fails
	defer s.wait.waitingOn.Store(nil)
	wait := min(50*time.Millisecond, maxWait)
	failures := 0
	for {
		release, ok, err := s.takeLease(ctx, l, key, ttl)
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			s.c.obs.cacheError(s, "lease", err)
			now := s.c.clock.Now()
			if patience.IsZero() || reached(now, patience) {
				s.log.Warn("cache lease failed; fetching without it", slog.Any("error", err))
				return nil, nil, nil
			}
			if failures == 0 {
				s.log.Warn("cache lease failed; trying it again while the current token is usable", slog.Any("error", err),
					slog.Time("fetch_without_lease_at", patience))
			}
			failures++
			d := max(min(250*time.Millisecond+time.Duration(s.c.rand()*float64(250*time.Millisecond)), patience.Sub(now)), time.Millisecond)
			if err := s.c.clock.Sleep(ctx, d); err != nil {
				return nil, nil, err
			}
			if h := s.adopt(ctx, key, cv); h != nil {
				return nil, h, nil
			}
			continue
		}
		if ok {
			// The holder before us may have stored a token just now.
			if h := s.adopt(ctx, key, cv); h != nil {
				release()
				return nil, h, nil
			}
			s.log.Debug("fetch lease taken", slog.Duration("ttl", ttl))
			return release, nil, nil
		}
		now := s.c.clock.Now()
		info := &LeaseInfo{Age: now.Sub(start)}
		if li, err := l.LeaseInfo(ctx, key); err == nil && li != nil {
			if why := s.c.implausibleLease(li); why != "" {
				err := errors.New("m2mtoken: the fetch lease in the cache: " + printable.Line(why, maxLeaseStatus))
				s.log.Warn(ignoredLeaseMessage, slog.Any("error", err))
				s.c.obs.cacheError(s, "lease", err)
				return nil, nil, nil
			}
			info = li
			info.Age = max(info.Age, now.Sub(start))
		}
		s.wait.waitingOn.Store(info)
		if s.gets.down() && (lostAt.IsZero() || reached(now, lostAt)) {
			s.log.Warn("another holder has the fetch lease, but the cache cannot read the token it would store; fetching without the lease",
				slog.Duration("waited", now.Sub(start)), slog.String("lease", info.String()))
			return nil, nil, nil
		}
		d := wait/2 + time.Duration(s.c.rand()*float64(wait/2))
		if info.Remaining > 0 {
			// A lease that lapses sooner is tried again as it lapses: its
			// holder stopped keeping it, and may be dead.
			d = min(d, info.Remaining+5*time.Millisecond)
		}
		if s.gets.down() {
			d = max(min(d, lostAt.Sub(now)), time.Millisecond)
		}
		s.log.Debug("another holder is fetching; waiting", slog.Duration("poll", d), slog.String("lease", info.String()))
		if err := s.c.clock.Sleep(ctx, d); err != nil {
			return nil, nil, err
		}
		if h := s.adopt(ctx, key, cv); h != nil {
			return nil, h, nil
		}
		wait = min(wait*2, maxWait)
	}
}

// ignoredLeaseMessage is the warning of a source that does not wait on a
// lease no live holder could have left.
const ignoredLeaseMessage = "ignoring the cache's fetch lease, which no live holder could have left; fetching without it (has something else written to the cache?)"

// maxLeaseHold is the longest a live holder could have held a lease, or
// set it to last: a holder keeps its lease while it fetches, and a fetch
// ends within FetchTimeout. Twice that leaves room for a holder with a
// longer timeout, or a clock that differs, and the LeaseTTL for the last
// keep.
func (c *client) maxLeaseHold() time.Duration { return 2*c.cfg.FetchTimeout + c.cfg.LeaseTTL }

// implausibleLease says why li cannot be a live holder's lease (see
// [Leaser]), or "" if it may be.
func (c *client) implausibleLease(li *LeaseInfo) string {
	limit := c.maxLeaseHold()
	why := func(what string, d time.Duration) string {
		return fmt.Sprintf("%s %v, longer than a live holder could (%v: twice %s, plus %s)", what, d.Round(time.Millisecond), limit,
			c.name("FetchTimeout"), c.name("LeaseTTL"))
	}
	switch {
	case li.Invalid != "":
		return li.Invalid
	case li.Remaining > limit:
		return why("it is set to last", li.Remaining)
	case li.Age > limit:
		return why("it has been held for", li.Age)
	}
	return ""
}

// takeLease tries the lease once. The lease is kept alive until the
// returned function releases it.
func (s *TokenSource) takeLease(ctx context.Context, l Leaser, key string, ttl time.Duration) (func(), bool, error) {
	le, ok, err := l.Lease(ctx, key, ttl)
	if err != nil || !ok {
		return nil, false, err
	}
	return s.keepAlive(le, ttl), true, nil
}

// keepAlive keeps le alive every third of ttl, with the fetch's last
// failed attempt as its status, until the returned function stops it and
// releases the lease. It runs on the source's clock's timers.
func (s *TokenSource) keepAlive(le Lease, ttl time.Duration) func() {
	k := &keptLease{s: s, le: le, ttl: ttl, every: max(ttl/3, time.Millisecond), before: s.wait.lastErr.Load()}
	k.ctx, k.cancel = context.WithCancel(s.c.life)
	k.mu.Lock()
	k.timer = s.c.clock.AfterFunc(k.every, k.keep)
	k.mu.Unlock()
	return k.release
}

type keptLease struct {
	s      *TokenSource
	le     Lease
	ttl    time.Duration
	every  time.Duration
	before *TokenError // the last error before the lease was taken: not this fetch's
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	timer   interface{ Stop() bool }
	stopped bool
	running sync.WaitGroup // a keep in progress; Add under mu while not stopped
}

func (k *keptLease) keep() {
	k.mu.Lock()
	if k.stopped {
		k.mu.Unlock()
		return
	}
	k.running.Add(1)
	k.mu.Unlock()
	defer k.running.Done()
	status := ""
	if te := k.s.wait.lastErr.Load(); te != nil && te != k.before {
		status = te.Error()
	}
	ctx, cancel := context.WithTimeout(k.ctx, k.every)
	held, err := k.le.Keep(ctx, k.ttl, status)
	cancel()
	switch {
	case err != nil:
		k.s.log.Warn("keeping the fetch lease alive failed; trying again", slog.Any("error", err), slog.Duration("in", k.every))
		k.s.c.obs.cacheError(k.s, "keep_alive", err)
	case !held:
		k.s.log.Warn("the fetch lease was lost (it lapsed, and another holder took it); fetching on", slog.Duration("lease_ttl", k.ttl))
		return
	}
	k.mu.Lock()
	if !k.stopped {
		k.timer = k.s.c.clock.AfterFunc(k.every, k.keep)
	}
	k.mu.Unlock()
}

func (k *keptLease) release() {
	k.mu.Lock()
	k.stopped = true
	k.timer.Stop()
	k.mu.Unlock()
	k.cancel()
	k.running.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), max(k.ttl, time.Second))
	defer cancel()
	if err := k.le.Release(ctx); err != nil {
		k.s.log.Warn("releasing the fetch lease failed; it lapses on its own", slog.Any("error", err), slog.Duration("lease_ttl", k.ttl))
		k.s.c.obs.cacheError(k.s, "release", err)
		return
	}
	k.s.log.Debug("fetch lease released")
}

// lostTokenAt is when a fetch that began waiting at start on another
// holder's lease, with cur as its token, stops waiting while its cache
// cannot read the token (see lease): halfway through cur's stale window,
// as with a failing lease, but not before the holder had the time of two
// fetches by the last one's latency (a holder that is merely slow
// replaces a corrupt value by then), and never after cur becomes
// unusable. Zero without a usable token: at once.
func lostTokenAt(cur *heldToken, start time.Time) time.Time {
	if cur == nil {
		return time.Time{}
	}
	at := cur.staleAt.Add(cur.unusableAt.Sub(cur.staleAt) / 2)
	if t := start.Add(2 * max(cur.entry.Latency, 0)); t.After(at) {
		at = t
	}
	if at.After(cur.unusableAt) {
		at = cur.unusableAt
	}
	return at
}
