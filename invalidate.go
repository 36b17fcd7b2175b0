// What Invalidate remembers (the token it dropped, when), and the backoff
// of invalidations that keep getting 401: an API that rejects every token
// (a wrong audience or grant, or a local caller that can make it answer
// 401) must not make the source fetch a token per
// Config.MinInvalidateInterval for ever. The transition itself, dropping
// the current token, is refresh.go's (invalidate).

package m2mtoken

import (
	"fmt"
	"log/slog"
	"time"
)

// invalidation is what Invalidate did last, under TokenSource.mu.
type invalidation struct {
	last    time.Time // when it last dropped a token
	token   string    // the access token it dropped, never taken from the cache again
	pending bool      // the source has no token because of it: the next fetch's reason
	backoff invalidateBackoff
}

// maxInvalidateBackoff is the longest interval invalidations back off to.
const maxInvalidateBackoff = time.Hour

// invalidateBackoff is the state of the backoff, under TokenSource.mu.
// Each invalidation that takes effect within twice the interval of the
// one before (the API rejected the replacement as soon as it was allowed
// to) doubles the interval, up to maxInvalidateBackoff; one after a
// longer quiet spell starts again at Config.MinInvalidateInterval.
type invalidateBackoff struct {
	interval time.Duration // 0 until the first invalidation: the base
	streak   int           // tokens rejected in a row
	reason   string
}

// current returns the least time between two invalidations that take
// effect, given the base (Config.MinInvalidateInterval).
func (b *invalidateBackoff) current(base time.Duration) time.Duration {
	if b.interval < base {
		return base
	}
	return b.interval
}

// applied records an invalidation that took effect at now, the last one
// having been at last (zero if none), and logs a backoff if it grew.
func (b *invalidateBackoff) applied(now, last time.Time, base time.Duration, log *slog.Logger) {
	iv := b.current(base)
	if base <= 0 || last.IsZero() || now.Sub(last) >= 2*iv {
		*b = invalidateBackoff{}
		return
	}
	b.streak++
	b.interval = min(2*iv, max(maxInvalidateBackoff, base))
	b.reason = fmt.Sprintf("the API answered 401 to %d tokens in a row, each soon after the last was replaced; "+
		"invalidations take effect at most once per %v until it has been quiet for twice that "+
		"(is the token's audience or scope wrong for the API, or is a caller forcing 401s?)", b.streak+1, b.interval)
	log.Warn("token invalidations back off", slog.Duration("interval", b.interval), slog.String("reason", b.reason))
}
