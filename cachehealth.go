// Whether the cache can read the source's token: an outage of Cache.Get is
// logged once when it starts and once, with a count, when it ends. (A fetch
// waiting on another holder's lease stops waiting for a token the cache
// cannot read: see lease in shared.go.)

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

// failed records a Get that failed with err at now; the first of an
// outage is logged as a warning, the others at debug level.
func (o *getOutage) failed(err error, now time.Time, log *slog.Logger) {
	o.mu.Lock()
	first := o.since.IsZero()
	if first {
		o.since = now
	}
	o.failures++
	o.last = err
	n := o.failures
	o.mu.Unlock()
	if first {
		log.Warn("cache get failed; fetching from the token endpoint (logged once until the cache answers again)", slog.Any("error", err))
	} else {
		log.Debug("cache get is still failing", slog.Int("failures", n), slog.Any("error", err))
	}
}

// answered records a Get that answered at now, and logs the end of an
// outage.
func (o *getOutage) answered(now time.Time, log *slog.Logger) {
	o.mu.Lock()
	since, n, last := o.since, o.failures, o.last
	o.since, o.failures, o.last = time.Time{}, 0, nil
	o.mu.Unlock()
	if !since.IsZero() {
		log.Info("cache get works again", slog.Int("failures", n), slog.Duration("after", now.Sub(since).Round(time.Millisecond)),
			slog.Any("last_error", last))
	}
}

// down reports whether the last Get failed: the cache cannot read the
// token, whoever stores it.
func (o *getOutage) down() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return !o.since.IsZero()
}
