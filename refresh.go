// A token's life: its states and the timers that move it, the slow path,
// the single fetch, background refresh, and invalidating and dropping the
// token. Every state transition is here: this file is the only one that
// takes TokenSource.mu, and it stays one file (about 520 lines) because
// the transitions share that lock and one set of invariants about which
// token is current; split, each part would have to restate them. The
// public methods that start them are tokensource.go's; the token request
// is request.go's, the shared cache's part shared.go's, and which errors
// are remembered, and for whom, failures.go's.

package m2mtoken

import (
	"context"
	"errors"
	"log/slog"

	"net/http"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"

	"github.com/m2mtoken/m2mtoken/internal/clock"
)

// heldToken is the token a source holds: the cache's record of it (an
// [Entry], shared with other holders), the windows computed from it, and
// this source's timers for it.
//
// A token moves through three states, driven by timers so that the read
// path reads no clock:
//
//	fresh:   handed out with two atomic loads (the token, and the mark
//	         the pool's eviction hand reads): no lock, no clock;
//	stale:   inside the refresh window: still handed out at once, and the
//	         first caller to see it starts one background refresh;
//	expired: inside the expiry skew, or past expiry: never handed out;
//	         callers wait for a fetch.
//
// A window is reached when either clock says so (see reached). Timers run
// on the monotonic clock, which stands still while the machine sleeps or
// the VM is paused, so a timer is only a wake-up: the watch it runs reads
// both clocks, and it runs at least every [watchInterval].
type heldToken struct {
	tok        *oauth2.Token
	entry      *Entry
	x5t        string    // the client certificate it is bound to (RFC 8705; client.boundTo), or ""
	staleAt    time.Time // see at
	unusableAt time.Time // see at

	refreshing atomic.Bool
	failures   int           // consecutive failed background refreshes; owned by the refresher
	watcher    clock.Timer   // the next watch; s.mu guards it
	timers     []clock.Timer // backoff timers; s.mu guards them
}

// reached reports whether now is at or past t by either clock: the
// monotonic one, which a wall-clock step back cannot fool, or the wall one,
// which runs on while the machine sleeps. (A time read from a cache has no
// monotonic reading; then both comparisons are on the wall clock.)
func reached(now, t time.Time) bool {
	return !now.Before(t) || !now.Round(0).Before(t.Round(0))
}

// state is where a token is in its life; see [heldToken].
type state int

const (
	stateFresh state = iota
	stateStale
	stateExpired
)

// at reports h's state at now.
func (h *heldToken) at(now time.Time) state {
	switch {
	case reached(now, h.unusableAt):
		return stateExpired
	case reached(now, h.staleAt):
		return stateStale
	}
	return stateFresh
}

// watchInterval bounds how long a token can be handed out past its window
// after the monotonic clock stood still (a laptop asleep, a VM paused or
// hibernated): the watch runs at least this often, in running time.
const watchInterval = time.Minute

// newHeld is hold without spread.
func (s *TokenSource) newHeld(ce *Entry, cv *certValue) *heldToken { return s.hold(ce, false, cv) }

// hold computes the windows of a token from its original lifetime.
// The default window is at least the skew plus twice the time the
// endpoint took to answer for this token (Entry.Latency): a slow endpoint
// gets its refresh started early enough that the refresh, and a takeover
// after its holder died, end before the token becomes unusable.
//
// spread (a pool's token that callers waited for: a first fetch, or one
// after expiry or invalidation) moves the first refresh to a random point
// between a tenth of the lifetime and the usual window, so that tokens
// fetched together (a pool filling at start, or after an outage) do not
// refresh together, cycle after cycle: the usual jitter, a fraction of the
// window, cannot spread a whole lifetime. Later refreshes keep the phase
// this gives them. A source from [New] does not spread.
func (s *TokenSource) hold(ce *Entry, spread bool, cv *certValue) *heldToken {
	life := ce.Expiry.Sub(ce.IssuedAt)
	skew := s.c.cfg.ExpirySkew
	if skew == 0 {
		skew = min(10*time.Second, life/20)
	}
	skew = min(skew, life/4)
	window := s.c.cfg.RefreshWindow
	if window == 0 {
		window = max(min(5*time.Minute, life/5), skew+2*max(ce.Latency, 0))
	}
	window = min(window, life/2)
	if j := s.c.cfg.RefreshJitter; j > 0 {
		window += time.Duration(float64(window) * j * s.c.rand())
		window = min(window, life*3/5)
	}
	h := &heldToken{tok: ce.Token(), entry: ce, staleAt: ce.Expiry.Add(-window), unusableAt: ce.Expiry.Add(-skew), x5t: s.c.boundTo(ce, cv)}
	if h.staleAt.After(h.unusableAt) {
		h.staleAt = h.unusableAt
	}
	if spread {
		if from := ce.IssuedAt.Add(life / 10); h.staleAt.After(from) {
			h.staleAt = from.Add(time.Duration(float64(h.staleAt.Sub(from)) * s.c.rand()))
		}
	}
	return h
}

// install makes h the current token and arms its watch. It reports false,
// and changes nothing, if h is already past its usable time.
func (s *TokenSource) install(h *heldToken) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.life.dropped.Load() {
		return false
	}
	now := s.c.clock.Now()
	st := h.at(now)
	if st == stateExpired {
		return false
	}
	if old := s.cur.Load(); old != nil {
		s.stopTimers(old)
	}
	s.cur.Store(h)
	s.stats.hadToken.Store(true)
	s.inv.pending = false
	if st == stateFresh {
		s.fresh.Store(h.tok)
	} else {
		s.fresh.Store(nil)
	}
	s.arm(h, now)
	s.log.Debug("token installed", slog.String("token", Fingerprint(h.entry.AccessToken)),
		slog.Time("expiry", h.entry.Expiry), slog.Time("stale_at", h.staleAt), slog.Time("unusable_at", h.unusableAt))
	return true
}

// arm schedules the next watch of h: at its next window, or after
// watchInterval, whichever is sooner. s.mu is held.
func (s *TokenSource) arm(h *heldToken, now time.Time) {
	next := h.unusableAt
	if h.at(now) == stateFresh {
		next = h.staleAt
	}
	d := min(next.Sub(now), next.Round(0).Sub(now.Round(0)), watchInterval)
	h.watcher = s.c.clock.AfterFunc(max(d, time.Millisecond), func() { s.watch(h) })
}

// watch moves h to the state the clocks say it is in, and arms the next
// watch while h is usable.
func (s *TokenSource) watch(h *heldToken) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.life.dropped.Load() || s.cur.Load() != h {
		return
	}
	now := s.c.clock.Now()
	switch h.at(now) {
	case stateExpired:
		s.expire(h)
		return
	case stateStale:
		s.fresh.CompareAndSwap(h.tok, nil)
	}
	s.arm(h, now)
}

// expire drops h, which is past its usable time. s.mu is held.
func (s *TokenSource) expire(h *heldToken) {
	s.fresh.CompareAndSwap(h.tok, nil)
	if s.cur.CompareAndSwap(h, nil) {
		s.stopTimers(h)
	}
}

// stopTimers stops h's timers. s.mu is held.
func (s *TokenSource) stopTimers(h *heldToken) {
	if h.watcher != nil {
		h.watcher.Stop()
		h.watcher = nil
	}
	for _, t := range h.timers {
		t.Stop()
	}
	h.timers = nil
}

// tokenSlow is the rest of TokenContext: marking the source used, and a
// token that is not fresh or not there.
func (s *TokenSource) tokenSlow(ctx context.Context) (*oauth2.Token, error) {
	s.used.Store(true)
	if tok := s.fresh.Load(); tok != nil {
		return tok, nil
	}
	if h := s.cur.Load(); h != nil {
		// Off the hot path a clock read is cheap: never hand out a token
		// past its window, even before its watch has run.
		switch h.at(s.c.clock.Now()) {
		case stateFresh:
			// The hot path can miss a fresh token while install runs.
			return h.tok, nil
		case stateStale:
			s.maybeRefresh(h)
			return h.tok, nil
		}
		s.mu.Lock()
		s.expire(h)
		s.mu.Unlock()
	}
	if err := s.heldError(ctx); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.stats.hadToken.Load() {
		s.stats.waits.Add(1)
	}
	s.stats.joins.Add(1)
	start := s.c.obs.startWait(s)
	ch := s.fetches.join(func() fetched { return s.fetch(context.WithoutCancel(ctx), false) })
	select {
	case r := <-ch:
		s.c.obs.waited(ctx, s, start, r.fl, true, r.err)
		if r.err != nil {
			return nil, r.err
		}
		return r.h.tok, nil
	case <-ctx.Done():
		werr := &WaitError{Ctx: ctx.Err(), Lease: s.wait.waitingOn.Load()}
		if last := s.wait.lastErr.Load(); last != nil {
			werr.Last = last
		}
		if a := s.wait.sending.Load(); a != nil {
			werr.Attempt, werr.AttemptElapsed = a.n, s.c.clock.Now().Sub(a.at)
		}
		s.c.obs.waited(ctx, s, start, nil, false, werr)
		return nil, werr
	}
}

// maybeRefresh starts one background refresh of the stale token h, unless
// one is running or waiting out its backoff.
func (s *TokenSource) maybeRefresh(h *heldToken) {
	if h.refreshing.Load() || !h.refreshing.CompareAndSwap(false, true) {
		return
	}
	if !s.track() {
		return
	}
	s.stats.refreshes.Add(1)
	go func() {
		defer s.life.bg.Done()
		s.stats.joins.Add(1)
		r := <-s.fetches.join(func() fetched { return s.fetch(s.c.life, true) })
		if r.err == nil {
			if r.h == h {
				// Nothing was fetched: h was still fresh. Let its own
				// refresh start when it turns stale.
				h.refreshing.Store(false)
			}
			return
		}
		if errors.Is(r.err, ErrClosed) {
			return
		}
		delay := s.c.backoff(h.failures, true)
		h.failures++
		level := slog.LevelWarn
		if te := (*TokenError)(nil); errors.As(r.err, &te) {
			switch {
			case badCredentials(te) && s.c.cred.file != nil:
				// The credential's file may change at any moment, and the
				// token runs out meanwhile: look again soon (a refusal
				// that holds sends nothing; see heldError).
				delay = credentialPoll
				if h.failures > 1 {
					level = slog.LevelDebug
				}
			case !te.Temporary:
				delay = max(delay, s.c.cfg.ErrorCacheTTL)
			}
			delay = max(delay, te.RetryAfter)
		}
		if w := quotaWait(r.err, s.c.clock.Now()); w > 0 {
			// Wait for the quota's reset, not a backoff step; blockQuota
			// has logged it once already.
			delay, level = max(delay, w), slog.LevelDebug
		}
		s.log.Log(context.Background(), level, "background refresh failed; serving the current token until it expires",
			slog.Any("error", r.err), slog.Duration("next_try_in", delay), slog.Time("expiry", h.entry.Expiry))
		s.mu.Lock()
		if !s.life.dropped.Load() {
			h.timers = append(h.timers, s.c.clock.AfterFunc(delay, func() { h.refreshing.Store(false) }))
		}
		s.mu.Unlock()
	}()
}

// track registers one background goroutine with Close. It reports false
// if the source is closed.
func (s *TokenSource) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.life.dropped.Load() {
		return false
	}
	s.life.bg.Add(1)
	return true
}

// fetch gets a token for everyone waiting: from the cache if another holder
// stored a fresher one, else from the endpoint (under the cache's lease,
// if it has one), and installs it. It runs detached from any caller.
// refresh says it is a background refresh.
func (s *TokenSource) fetch(parent context.Context, refresh bool) fetched {
	// A caller that found no token may reach the flight group just after
	// the flight it missed installed one: it has nothing to fetch. (It
	// counts as collapsed: no flight of its own.)
	if h := s.cur.Load(); h != nil && h.at(s.c.clock.Now()) == stateFresh {
		return fetched{h: h}
	}
	s.stats.flights.Add(1)
	ctx, cancel := context.WithTimeout(parent, s.c.cfg.FetchTimeout)
	defer cancel()
	// Close cancels the fetch: it is registered with the source, which
	// has one fetch at a time.
	s.mu.Lock()
	if s.life.dropped.Load() {
		s.mu.Unlock()
		return fetched{err: ErrClosed}
	}
	s.life.bg.Add(1)
	s.life.cancelFetch = cancel
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.life.cancelFetch = nil
		s.mu.Unlock()
		s.life.bg.Done()
	}()

	ctx, fl := s.c.obs.fetchStart(ctx, s, func() FetchReason { return s.fetchReason(refresh) })
	if fl != nil {
		s.wait.flight.Store(fl)
	}
	h, origin, err := s.fetchToken(ctx, refresh)
	if fl != nil {
		s.wait.flight.CompareAndSwap(fl, nil)
		s.c.obs.fetchDone(s, fl, h, origin, err)
	}
	return fetched{h: h, fl: fl, err: err}
}

// fetchToken is fetch's work, and says where the token came from.
func (s *TokenSource) fetchToken(ctx context.Context, refresh bool) (*heldToken, Origin, error) {
	// The cache key names the credential as it is now: a credential that
	// changed in its file is looked for (and leased) under its own key.
	if s.c.cert != nil {
		s.c.cert.current(ctx) // the key names the certificate as it is now
	}
	cv := s.c.cert.now()
	key := s.c.cacheKeyFor(s.reqKey, s.c.cred.forKey(ctx, s.log), cv)
	if h := s.adopt(ctx, key, cv); h != nil {
		return h, OriginCache, nil
	}
	if l, ok := s.c.cache.(Leaser); ok {
		release, h, err := s.lease(ctx, l, key, cv)
		if err != nil {
			return nil, OriginNone, s.closedOr(err)
		}
		if h != nil {
			return h, OriginCache, nil
		}
		if release != nil {
			defer release()
		}
	}
	if qe := s.c.quotaBlocked(s.req.Organization); qe != nil {
		s.log.Debug("Auth0 quota exhausted; not sending a token request", slog.String("scope", qe.Scope), slog.Time("reset", qe.Quota.Reset))
		return nil, OriginNone, qe
	}
	if err := s.c.heldError(ctx); err != nil {
		// Another token of the pool learned that the client cannot get
		// tokens while this fetch started: send nothing.
		return nil, OriginNone, err
	}
	if err := s.pool.admitNew(s); err != nil {
		return nil, OriginNone, err
	}
	ce, v, cv, err := s.request(ctx, refresh)
	if err != nil {
		return nil, OriginNone, s.closedOr(err)
	}
	ce.Latency = s.c.clock.Now().Sub(ce.IssuedAt) // IssuedAt: when the answering attempt started
	if err := s.c.cache.Set(ctx, s.c.cacheKeyFor(s.reqKey, v, cv), ce); err != nil {
		s.log.Warn("cache set failed; the token is kept in memory", slog.Any("error", err))
		s.c.obs.cacheError(s, "set", err)
	}
	h := s.hold(ce, s.pool.spread && !refresh, cv)
	if !s.install(h) {
		if s.life.dropped.Load() {
			return nil, OriginNone, ErrClosed
		}
		desc := tooLate(ce, h, s.c.clock.Now())
		if skew, ok := s.c.setting("ExpirySkew"); ok {
			desc += ", or lower " + skew
		}
		return nil, OriginNone, &TokenError{URL: s.c.tokenURL, StatusCode: http.StatusOK, Description: desc}
	}
	return h, OriginEndpoint, nil
}

// tooLate says why a token that just arrived cannot be used: it had less
// than the expiry skew left. Either the answer took most of the token's
// lifetime, or the token's exp was near (a server clock behind ours).
func tooLate(ce *Entry, h *heldToken, now time.Time) string {
	r := func(d time.Duration) string { return max(d, 0).Round(time.Millisecond).String() }
	return "the token had " + r(ce.Expiry.Sub(now)) + " left when it arrived, less than the expiry skew (" +
		r(ce.Expiry.Sub(h.unusableAt)) + "); its lifetime was " + r(ce.Expiry.Sub(ce.IssuedAt)) +
		" from the request, and the answer took " + r(now.Sub(ce.IssuedAt)) +
		": check the endpoint's latency and the clocks"
}

func (s *TokenSource) closedOr(err error) error {
	if s.life.dropped.Load() {
		return ErrClosed
	}
	return err
}

// dropBound drops the current token if it is bound to a client
// certificate other than thumb's: the API would refuse it over the new
// certificate's connections, so the next call fetches one bound to it.
func (s *TokenSource) dropBound(thumb string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h := s.cur.Load(); h != nil && h.x5t != "" && h.x5t != thumb {
		s.expire(h)
		s.log.Debug("token dropped: it is bound to the client certificate before", slog.String("token", Fingerprint(h.tok.AccessToken)))
	}
}

// wasInvalidated reports whether accessToken is the token Invalidate
// dropped last: a cache may still hold it, and it is not taken again.
func (s *TokenSource) wasInvalidated(accessToken string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return accessToken == s.inv.token
}

// invalidateBackoff is the least time between two invalidations that
// take effect, and why it is longer than Config.MinInvalidateInterval.
func (s *TokenSource) invalidateBackoff() (time.Duration, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return max(s.inv.backoff.current(s.c.cfg.MinInvalidateInterval), 0), s.inv.backoff.reason
}

// invalidate is Invalidate's work. It reports whether tok was the current
// token, and whether it was dropped.
func (s *TokenSource) invalidate(tok *oauth2.Token) (current, applied bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.cur.Load()
	if cur == nil || (cur.tok != tok && cur.tok.AccessToken != tok.AccessToken) {
		return false, false
	}
	now := s.c.clock.Now()
	if iv := s.inv.backoff.current(s.c.cfg.MinInvalidateInterval); iv > 0 && !s.inv.last.IsZero() && now.Sub(s.inv.last) < iv {
		s.log.Warn("token invalidation ignored: the last one was too recent; is the API rejecting every token (wrong audience or missing grant)?",
			slog.String("token", Fingerprint(tok.AccessToken)), slog.Duration("min_interval", iv))
		return true, false
	}
	s.inv.backoff.applied(now, s.inv.last, s.c.cfg.MinInvalidateInterval, s.log)
	s.inv.last = now
	s.inv.token = tok.AccessToken
	s.inv.pending = true
	s.fresh.CompareAndSwap(cur.tok, nil)
	s.cur.CompareAndSwap(cur, nil)
	s.stopTimers(cur)
	s.log.Debug("token invalidated", slog.String("token", Fingerprint(tok.AccessToken)))
	return true, true
}

// drop closes the source without waiting: its timers stop, its token is
// gone, its fetches are cancelled. It reports false if it was closed.
func (s *TokenSource) drop() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.life.dropped.Load() {
		return false
	}
	s.life.dropped.Store(true)
	if cur := s.cur.Load(); cur != nil {
		s.stopTimers(cur)
	}
	s.fresh.Store(nil)
	s.cur.Store(nil)
	if s.life.cancelFetch != nil {
		s.life.cancelFetch()
	}
	return true
}

// finish waits for a dropped source's background work and tells the
// observer it is closed.
func (s *TokenSource) finish() {
	s.life.bg.Wait()
	s.c.obs.closed(s)
}

// fetchReason says why a fetch that is not a background refresh starts.
func (s *TokenSource) fetchReason(refresh bool) FetchReason {
	if refresh {
		return FetchRefresh
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.inv.pending:
		return FetchInvalidated
	case !s.stats.hadToken.Load():
		return FetchFirst
	}
	return FetchExpired
}
