// The agent's watcher: one per source. It keeps the source's token warm
// (the library refreshes a token in the background only when a caller sees
// it stale, and the agent may have no caller for hours), learns of each new
// token, and hands it to the file sinks.

package agent

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/internal/clock"
)

// tokenGetter is the part of *m2mtoken.TokenSource the agent uses.
type tokenGetter interface {
	TokenContext(context.Context) (*oauth2.Token, error)
	Stats() m2mtoken.Stats
}

// Bounds of the watcher's checks. A check is one call to TokenContext:
// two atomic loads while the token is fresh, so that checking often costs
// nothing. The interval is a sixteenth of the time the token has left, so
// that a token that turns stale (a fifth of its lifetime before expiry, by
// default) is seen within a small part of its refresh window, and its
// background refresh starts then.
const (
	minCheck     = 10 * time.Millisecond
	maxCheck     = 30 * time.Second
	checkDivisor = 16
	minRetry     = time.Second
	maxRetry     = 30 * time.Second
)

// watcher watches one source.
type watcher struct {
	name string
	src  tokenGetter
	clk  clock.Clock
	log  *slog.Logger
	// deliver hands a new token to the sinks; an error makes the watcher
	// try again at its next check.
	deliver func(*oauth2.Token) error
	// outage is told when the watcher finds no token, and when it has one.
	outage *outage

	mu       sync.Mutex
	tok      *oauth2.Token // the last token seen
	lastErr  error         // the last failure to get a token, until the next success
	tokens   uint64        // distinct tokens seen
	ready    chan struct{} // closed when the first token has been delivered
	readyOne sync.Once
	done     chan struct{} // closed when run has returned
}

func newWatcher(name string, src tokenGetter, clk clock.Clock, log *slog.Logger, o *outage, deliver func(*oauth2.Token) error) *watcher {
	return &watcher{name: name, src: src, clk: clk, log: log, outage: o, deliver: deliver, ready: make(chan struct{}), done: make(chan struct{})}
}

// run checks the source until ctx is done.
func (w *watcher) run(ctx context.Context) {
	defer close(w.done)
	failures := 0
	pending := false // a delivery failed: try again at the next check
	for {
		tok, err := w.src.TokenContext(ctx)
		if ctx.Err() != nil {
			return
		}
		var next time.Duration
		if err != nil {
			next = min(minRetry<<min(failures, 10), maxRetry)
			failures++
			w.mu.Lock()
			w.lastErr = err
			w.mu.Unlock()
			// The library logged the failed fetch; the outage says, once,
			// what it means for the source.
			w.outage.down(err)
		} else {
			failures = 0
			w.outage.up()
			w.mu.Lock()
			changed := w.tok == nil || w.tok.AccessToken != tok.AccessToken
			if changed {
				w.tok = tok
				w.tokens++
			}
			w.lastErr = nil
			w.mu.Unlock()
			if changed {
				w.log.Info("new token", slog.String("source", w.name), slog.String("token", m2mtoken.Fingerprint(tok.AccessToken)),
					slog.Time("expiry", tok.Expiry))
			}
			if changed || pending {
				pending = w.deliver(tok) != nil
			}
			// Ready once the first token is in the sinks too (or they
			// failed, and say so in the log).
			w.readyOne.Do(func() { close(w.ready) })
			next = checkInterval(tok.Expiry.Sub(w.clk.Now()))
			if pending {
				next = max(next, minRetry)
			}
		}
		if !w.sleep(ctx, next) {
			return
		}
	}
}

// checkInterval is how long to wait before the next check of a token that
// has left to live.
func checkInterval(left time.Duration) time.Duration {
	return min(max(left/checkDivisor, minCheck), maxCheck)
}

func (w *watcher) sleep(ctx context.Context, d time.Duration) bool {
	done := make(chan struct{})
	t := w.clk.AfterFunc(d, func() { close(done) })
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// current returns the last token seen, if it has not expired, and the last
// error: the watcher's, or else the outage's (a failed fetch that the
// watcher has not yet seen end).
func (w *watcher) current() (*oauth2.Token, error) {
	w.mu.Lock()
	tok, err := w.tok, w.lastErr
	w.mu.Unlock()
	if tok != nil && !w.clk.Now().Before(tok.Expiry) {
		tok = nil
	}
	if err == nil && tok == nil {
		err = w.outage.err()
	}
	return tok, err
}

// seen is the number of distinct tokens the watcher has seen.
func (w *watcher) seen() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.tokens
}
