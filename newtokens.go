// The bound on the token requests a pool makes for requests it holds no
// token for: a token bucket on the injectable clock, and the error past
// it. Whoever chooses a pool's requests (a tenant header mapped to
// Organization) would otherwise choose how many tokens it fetches.

package m2mtoken

import (
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"
)

// The defaults of Config.NewTokenBurst and Config.NewTokenRate: one
// instance of a fleet starting cold fetches its first 100 new tokens at
// once, then 10 a second (docs/pool.md says why).
const (
	defaultNewTokenBurst = 100
	defaultNewTokenRate  = 10
)

// newTokenLimit is a token bucket: burst new tokens at once, rate a second
// after. A nil *newTokenLimit allows everything. (x/time/rate does the
// same, but would be the root module's second dependency for these few
// lines.)
type newTokenLimit struct {
	rate, burst float64

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// newNewTokenLimit returns the limit cfg (with its defaults filled in)
// sets, or nil for none.
func newNewTokenLimit(cfg *Config, now time.Time) *newTokenLimit {
	if cfg.NewTokenRate < 0 {
		return nil
	}
	b := float64(cfg.NewTokenBurst)
	return &newTokenLimit{rate: cfg.NewTokenRate, burst: b, tokens: b, last: now}
}

// refill adds what the time since the last call earned. l.mu is held.
func (l *newTokenLimit) refill(now time.Time) {
	if d := now.Sub(l.last); d > 0 {
		l.tokens = min(l.burst, l.tokens+d.Seconds()*l.rate)
		l.last = now
	}
}

// take spends one new token's allowance. It reports false, and how long
// until the next one, if none is left.
func (l *newTokenLimit) take(now time.Time) (bool, time.Duration) { return l.use(now, true) }

// check reports what take would, spending nothing.
func (l *newTokenLimit) check(now time.Time) (bool, time.Duration) { return l.use(now, false) }

func (l *newTokenLimit) use(now time.Time, spend bool) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refill(now)
	if l.tokens < 1 {
		return false, l.wait()
	}
	if spend {
		l.tokens--
	}
	return true, 0
}

// wait is how long until one new token is allowed. l.mu is held.
func (l *newTokenLimit) wait() time.Duration {
	if l.rate <= 0 || math.IsInf(l.rate, 1) {
		return 0
	}
	return max(time.Duration(math.Ceil((1-l.tokens)/l.rate*float64(time.Second))), time.Millisecond)
}

// NewTokenLimitError is returned, and no token request is sent, when a
// [Pool] is asked for a token it does not hold while its bound on such
// requests (Config.NewTokenBurst at once, Config.NewTokenRate a second)
// is used up. The tokens the pool holds are still handed out; asking again
// after RetryAfter may succeed.
type NewTokenLimitError struct {
	// Burst and Rate are the bound: new tokens at once, and a second.
	Burst int
	Rate  float64
	// RetryAfter is how long until the pool allows its next new token.
	RetryAfter time.Duration
	// Dropping is set when the pool holds Config.MaxTokens tokens: it
	// refused the request before making room for it, so that refused
	// requests drop none of the tokens it holds.
	Dropping bool

	names func(field string) string // Config.FieldNames
}

// Error says that nothing was sent, why, and what to change.
func (e *NewTokenLimitError) Error() string {
	name := func(field string) string { n, _ := fieldName(e.names, field); return n }
	return fmt.Sprintf("m2mtoken: no token request sent: the pool has no token for this request, and has fetched as many new ones as it may "+
		"(%s %d at once, then %s %g a second); the next may go in %v. "+
		"If the pool's requests come from outside (a tenant header), check them against your own list first; if they are yours, raise %s",
		name("NewTokenBurst"), e.Burst, name("NewTokenRate"), e.Rate, roundDuration(e.RetryAfter), name("NewTokenRate"))
}

// newTokenErr is the error of a new token the pool's bound refuses.
func (p *Pool) newTokenErr(wait time.Duration, dropping bool) *NewTokenLimitError {
	return &NewTokenLimitError{Burst: p.c.cfg.NewTokenBurst, Rate: p.c.cfg.NewTokenRate, RetryAfter: wait, Dropping: dropping, names: p.c.cfg.FieldNames}
}

// admitNew spends the pool's allowance for a token request of s, which
// has never had a token, or returns the error past the bound. The pool's
// default request (Config's) is the service's own: it is not counted.
func (p *Pool) admitNew(s *TokenSource) error {
	if s.stats.hadToken.Load() || s.life.id == p.defID {
		return nil
	}
	ok, wait := p.newTokens.take(p.c.clock.Now())
	if ok {
		return nil
	}
	s.log.Debug("the pool's bound on new tokens is used up; not sending a token request", slog.Duration("next_in", wait))
	return p.newTokenErr(wait, false)
}
