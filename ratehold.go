// The token endpoint's rate limit, held for every token of a client, as
// a used-up client quota is: after a 429 that is not about a quota, or an
// answer that says no request is left (X-RateLimit-Remaining: 0), no token
// of the pool sends a request until the reset the answer gave. Then one
// request goes first and the others wait for its answer, so that a pool
// of many tokens does not meet a 429 with as many requests, nor the end
// of a hold with all of them at once. With the client's own transport, at
// most Config.MaxConnsPerHost requests are in flight: the others wait
// here, where a 429 that comes back stops them, rather than in the
// transport's queue, where nothing would.

package m2mtoken

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// RateLimit is the token endpoint's tenant-wide rate limit, from the
// X-RateLimit-* headers of the last answer that had them. On Auth0 it is
// shared by every client of the tenant: it is not this client's quota
// (see [Quotas]).
type RateLimit struct {
	// Limit and Remaining are X-RateLimit-Limit and X-RateLimit-Remaining.
	Limit, Remaining int64
	// Reset is X-RateLimit-Reset in the local clock (corrected with the
	// answer's Date header).
	Reset time.Time
	// At is when the answer carrying them arrived.
	At time.Time
}

// maxRateHold bounds a hold, as readAnswer bounds a 429's wait.
const maxRateHold = time.Hour

// rateHold is a client's hold on its token requests. The zero value holds
// nothing and does not bound requests in flight.
type rateHold struct {
	// slots has a place for each request in flight, if they are bounded.
	slots chan struct{}

	mu    sync.Mutex
	until time.Time   // no request before this
	cause *TokenError // the 429 that set it; nil for a reading
	// probe is set by a 429 or an empty reading: the next request goes
	// alone (probing), and the others wait for its answer (changed).
	probe, probing bool
	changed        chan struct{}
	waiting        int // requests held now
}

// waitRate waits until s may send a token request: a place in flight, and
// no hold. It reports whether the request goes first after a hold. Every
// request it lets go must report to rateAnswered. It returns the hold's
// error, without waiting, if ctx's deadline comes before the hold ends,
// and an error when ctx ends while it waits.
//
// lastErr is the token's last error, which callers that stop waiting are
// told: while the hold lasts, it is the hold's.
func (c *client) waitRate(ctx context.Context, lastErr *atomic.Pointer[TokenError], log *slog.Logger) (probe bool, held *TokenError) {
	h := &c.hold
	for waited := false; ; waited = true {
		if h.slots != nil {
			select {
			case h.slots <- struct{}{}:
			case <-ctx.Done():
				return false, c.stopped(ctx, lastErr)
			}
		}
		h.mu.Lock()
		now := c.clock.Now()
		var wait time.Duration
		var changed chan struct{}
		switch {
		case !h.until.IsZero() && !reached(now, h.until):
			wait = h.until.Sub(now)
		case h.probing:
			if h.changed == nil {
				h.changed = make(chan struct{})
			}
			changed = h.changed
		case h.probe:
			h.probing = true
			h.mu.Unlock()
			return true, nil
		default:
			h.mu.Unlock()
			return false, nil
		}
		if h.slots != nil {
			<-h.slots
		}
		held = h.heldError(c.tokenURL, now)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			h.mu.Unlock()
			return false, held
		}
		h.waiting++
		h.mu.Unlock()
		// Callers that stop waiting are told why the fetch waits.
		lastErr.Store(held)
		if !waited {
			log.Debug("the token endpoint's rate limit holds every token of the pool; waiting", slog.Duration("wait", wait))
		}
		err := c.waitFor(ctx, wait, changed)
		h.mu.Lock()
		h.waiting--
		h.mu.Unlock()
		if err != nil {
			return false, held
		}
	}
}

// stopped is the error of a request whose fetch ended (its deadline, or
// Close) while it waited for a place in flight: the last attempt's, if
// any.
func (c *client) stopped(ctx context.Context, lastErr *atomic.Pointer[TokenError]) *TokenError {
	if te := lastErr.Load(); te != nil {
		return te
	}
	return &TokenError{URL: c.tokenURL, Temporary: true, err: ctx.Err()}
}

// waitFor waits d on the client's clock, or until changed is closed (nil:
// never), or ctx ends.
func (c *client) waitFor(ctx context.Context, d time.Duration, changed chan struct{}) error {
	var timer chan struct{}
	if d > 0 {
		timer = make(chan struct{})
		t := c.clock.AfterFunc(d, func() { close(timer) })
		defer t.Stop()
	}
	select {
	case <-timer:
	case <-changed:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// rateAnswered records what one request waitRate let go learned of the
// rate limit, and frees its place: status is 0 if no answer came; h, rl
// and te are the answer's headers, rate-limit reading and error, scrubbed
// (te is nil for a token, and for a used-up quota, which quota.go holds).
func (c *client) rateAnswered(probe bool, status int, h http.Header, rl *RateLimit, te *TokenError, now time.Time) {
	hd := &c.hold
	hd.mu.Lock()
	defer hd.mu.Unlock()
	if hd.slots != nil {
		<-hd.slots
	}
	if probe {
		hd.probing = false
		if hd.changed != nil {
			close(hd.changed)
			hd.changed = nil
		}
	}
	var until time.Time
	switch {
	case te != nil && te.StatusCode == http.StatusTooManyRequests:
		// Without a time to wait (no Retry-After, no X-RateLimit-Reset),
		// requests go one at a time until one gets through.
		until = now.Add(min(te.RetryAfter, maxRateHold))
		hd.cause = te
	case rl != nil && strings.TrimSpace(h.Get("X-RateLimit-Remaining")) == "0" && rl.Reset.After(now):
		// Waiting until exactly the reset second races the refill: add one.
		until = rl.Reset.Add(time.Second)
		if limit := now.Add(maxRateHold); until.After(limit) {
			until = limit
		}
		hd.cause = nil
	default:
		if probe && status != 0 {
			// The limit let the first request through: the others go.
			hd.probe = false
		}
		return
	}
	if !hd.probe || until.After(hd.until) {
		c.log.Warn("the token endpoint's rate limit is used up; no token of the pool sends a request until it resets",
			slog.Int("status", status), slog.Time("until", until))
	}
	hd.probe = true
	if until.After(hd.until) {
		hd.until = until
	}
}

// errHeld is the error under a request the hold stopped.
var errHeld = errors.New("no request sent: the token endpoint's rate limit is used up")

// heldError is the error of a request the hold stops: the status, code
// and description of the 429 that set it, if one did, and when it ends. Nothing else of another token's answer reaches its callers.
// h.mu is held.
func (h *rateHold) heldError(url string, now time.Time) *TokenError {
	te := &TokenError{URL: url, Temporary: true, RetryAfter: max(h.until.Sub(now), 0), err: errHeld}
	te.Hint = "the last answer said none was left (X-RateLimit-Remaining: 0); "
	if c := h.cause; c != nil {
		te.StatusCode, te.Code, te.Description = c.StatusCode, c.Code, c.Description
		te.Hint = "not sent: another request of the pool got this answer; "
	}
	te.Hint += "no token of the pool sends a request until the rate limit resets"
	if te.RetryAfter > 0 {
		te.Hint += ", in " + roundDuration(te.RetryAfter).String()
	} else {
		te.Hint += "; one request at a time goes until one gets through"
	}
	return te
}
