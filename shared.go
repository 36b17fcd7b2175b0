// How a source uses Config.Cache when it needs a token: adopting one that
// another holder stored, and taking the cache's fetch lease so that one
// holder in a fleet fetches for all.

package m2mtoken

import (
	"context"
	"log/slog"
	"time"
)

// adopt installs the cache's token if it is fresh, newer than the current
// one, and not the token last invalidated.
func (s *TokenSource) adopt(ctx context.Context) *entry {
	ce, err := s.cache.Get(ctx, s.key)
	if err != nil {
		s.log.Warn("cache get failed; fetching from the token endpoint", slog.Any("error", err))
		return nil
	}
	if !ce.Valid() || !s.usableType(ce.TokenType) {
		return nil
	}
	if cur := s.cur.Load(); cur != nil && !ce.Expiry.After(cur.src.Expiry) {
		return nil
	}
	s.mu.Lock()
	revoked := ce.AccessToken == s.invalidated
	s.mu.Unlock()
	if revoked {
		return nil
	}
	e := s.newEntry(ce)
	if e.at(s.clock.Now()) != stateFresh || !s.install(e) {
		return nil
	}
	s.cacheHits.Add(1)
	s.log.Debug("token taken from cache", slog.String("token", Fingerprint(ce.AccessToken)), slog.Time("expiry", ce.Expiry))
	return e
}

// lease waits for the cache's fetch lease. It returns the release function
// if this source should fetch, or the entry another holder stored while it
// waited. A cache error means: fetch without the lease.
func (s *TokenSource) lease(ctx context.Context, l Leaser) (func(), *entry, error) {
	wait := 50 * time.Millisecond
	for {
		release, ok, err := l.TryLease(ctx, s.key, s.cfg.LeaseTTL)
		if err != nil {
			s.log.Warn("cache lease failed; fetching without it", slog.Any("error", err))
			return nil, nil, nil
		}
		if ok {
			// The holder before us may have stored a token just now.
			if e := s.adopt(ctx); e != nil {
				release()
				return nil, e, nil
			}
			return release, nil, nil
		}
		s.log.Debug("another holder is fetching; waiting", slog.Duration("poll", wait))
		if err := s.clock.Sleep(ctx, wait/2+time.Duration(s.rand()*float64(wait/2))); err != nil {
			return nil, nil, err
		}
		if e := s.adopt(ctx); e != nil {
			return nil, e, nil
		}
		wait = min(wait*2, time.Second)
	}
}
