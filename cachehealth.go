// Whether the cache can read the source's token: an outage of Cache.Get is
// logged once when it starts and once, with a count, when it ends, and a
// fetch waiting on another holder's lease stops waiting for a token the
// cache cannot read (see lease).

package m2mtoken

import (
	"log/slog"
	"sync"
	"time"
)

// getOutage is a run of failed Cache.Get calls.
type getOutage struct {
	mu       sync.Mutex
	since    time.Time // the first failure; zero while Get answers
	failures int
	last     error
}

// cacheGetFailed records a failed Get; the first of an outage is logged as
// a warning, the others at debug level.
func (s *TokenSource) cacheGetFailed(err error) {
	o := &s.gets
	o.mu.Lock()
	first := o.since.IsZero()
	if first {
		o.since = s.c.clock.Now()
	}
	o.failures++
	o.last = err
	n := o.failures
	o.mu.Unlock()
	if first {
		s.log.Warn("cache get failed; fetching from the token endpoint (logged once until the cache answers again)", slog.Any("error", err))
	} else {
		s.log.Debug("cache get is still failing", slog.Int("failures", n), slog.Any("error", err))
	}
	s.c.obs.cacheError(s, "get", err)
}

// cacheGetAnswered records a Get that answered, and logs the end of an
// outage.
func (s *TokenSource) cacheGetAnswered() {
	o := &s.gets
	o.mu.Lock()
	since, n, last := o.since, o.failures, o.last
	o.since, o.failures, o.last = time.Time{}, 0, nil
	o.mu.Unlock()
	if !since.IsZero() {
		s.log.Info("cache get works again", slog.Int("failures", n), slog.Duration("after", s.c.clock.Now().Sub(since).Round(time.Millisecond)),
			slog.Any("last_error", last))
	}
}

// cacheGetDown reports whether the source's last Get failed: the cache
// cannot read the token, whoever stores it.
func (s *TokenSource) cacheGetDown() bool {
	o := &s.gets
	o.mu.Lock()
	defer o.mu.Unlock()
	return !o.since.IsZero()
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
	if t := start.Add(2 * max(cur.src.Latency, 0)); t.After(at) {
		at = t
	}
	if at.After(cur.unusableAt) {
		at = cur.unusableAt
	}
	return at
}
