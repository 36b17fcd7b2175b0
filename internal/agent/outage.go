// A source's outage as the agent logs it: while a source cannot get a
// token, every request for it is refused, and a log line per refused
// request would bury the log (callers every 100 ms are 600 lines a
// minute). The library logs one line per failed fetch; the agent adds one
// line when the source has no token, a summary now and then while the
// outage goes on (how long, how many requests were refused), and one
// line when it ends.

package agent

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/internal/clock"
)

// Summaries of an outage that goes on: the first a minute after it began,
// then at twice the interval each time, up to every ten minutes.
const (
	firstSummary = time.Minute
	maxSummary   = 10 * time.Minute
)

// outage tracks one source's outage: from the first caller or fetch that
// found no token to the next token.
type outage struct {
	source string
	clk    clock.Clock
	log    *slog.Logger

	mu       sync.Mutex
	since    time.Time // when it began; zero while the source has a token
	refused  uint64    // requests refused since then
	failed   uint64    // fetches failed since then
	lastErr  error     // the last error seen since then
	next     time.Time // the next summary is due then
	interval time.Duration
}

func newOutage(source string, clk clock.Clock, log *slog.Logger) *outage {
	return &outage{source: source, clk: clk, log: log}
}

// down records that a caller (the watcher, or a request) found no token
// because of err: the outage begins, if it has not, with one line.
func (o *outage) down(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.downLocked(err, 0)
}

// downLocked is down, for an outage that began ago before now if it
// begins.
func (o *outage) downLocked(err error, ago time.Duration) {
	now := o.clk.Now()
	o.lastErr = err
	if o.since.IsZero() {
		o.since, o.refused, o.failed = now.Add(-ago), 0, 0
		o.interval, o.next = firstSummary, o.since.Add(firstSummary)
		o.log.Warn("no token for source: its requests are refused until a fetch succeeds", slog.String("source", o.source), slog.Any("error", err))
		return
	}
	o.summarize(now)
}

// refusedRequest records a request refused for want of a token.
func (o *outage) refusedRequest(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.downLocked(err, 0)
	o.refused++
}

// fetchFailed records a fetch that found no token for callers that had
// none (not a background refresh, whose source still serves a token),
// after trying for took: the outage began when that fetch did.
func (o *outage) fetchFailed(err error, took time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.downLocked(err, took)
	o.failed++
}

// up records a token: an outage ends, with one line.
func (o *outage) up() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.since.IsZero() {
		return
	}
	o.log.Info("source has a token again", slog.String("source", o.source),
		slog.Duration("after", o.clk.Now().Sub(o.since).Round(time.Millisecond)),
		slog.Uint64("requests_refused", o.refused), slog.Uint64("fetches_failed", o.failed))
	o.since, o.lastErr = time.Time{}, nil
}

// err returns the last error of the outage, or nil if there is none.
func (o *outage) err() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.lastErr
}

// summarize logs how the outage stands, if a summary is due.
func (o *outage) summarize(now time.Time) {
	if now.Before(o.next) {
		return
	}
	o.log.Warn("still no token for source", slog.String("source", o.source),
		slog.Duration("for", now.Sub(o.since).Round(time.Second)),
		slog.Uint64("requests_refused", o.refused), slog.Uint64("fetches_failed", o.failed),
		slog.Any("error", o.lastErr))
	o.interval = min(2*o.interval, maxSummary)
	o.next = now.Add(o.interval)
}

// observe returns an Observer that tells each source's outage about its
// fetches (and calls next's, if any): a fetch that gets a token ends an
// outage at once, whoever asked for it; a failed one, for callers that
// had no token, is counted. sourcesOf finds the agent's sources of a
// library source: every source of the request it serves.
func observe(next *m2mtoken.Observer, sourcesOf func(*m2mtoken.TokenSource) []*agentSource) *m2mtoken.Observer {
	o := &m2mtoken.Observer{}
	if next != nil {
		*o = *next
	}
	done := o.FetchDone
	o.FetchDone = func(ctx context.Context, info m2mtoken.FetchDoneInfo) {
		if done != nil {
			done(ctx, info)
		}
		for _, s := range sourcesOf(info.Source) {
			switch {
			case info.Err == nil:
				s.outage.up()
			case info.Reason != m2mtoken.FetchRefresh && !errors.Is(info.Err, m2mtoken.ErrClosed) && !errors.Is(info.Err, context.Canceled):
				s.outage.fetchFailed(info.Err, info.Duration)
			}
		}
	}
	return o
}
