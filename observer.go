// Observer: a dependency-free way to watch what a source does (fetches,
// attempts, waits, invalidations, cache errors, rate-limit and quota
// readings), for metrics, traces or logs. The m2mtokenotel module turns it into
// OpenTelemetry instruments and spans.

package m2mtoken

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// Observer receives what a [TokenSource] does. Set [Config.Observer] to one
// and fill in the functions you need; nil functions are skipped. The
// m2mtokenotel module provides one that records OpenTelemetry metrics and
// spans.
//
// Observer is a struct of optional functions, like
// [net/http/httptrace.ClientTrace], rather than an interface: a later
// version adds a field for a new event without breaking an observer written
// against this one, and a user sets only the events they care about.
//
// The functions are called synchronously, on the goroutine doing the work,
// and never on the hot path: [TokenSource.Token] with a fresh token, and
// [Transport.RoundTrip] with a cached header, call none of them. They must
// be quick and safe for concurrent use, and must not call the source's
// Token methods. The events carry no secret and no token.
//
// Every event names its Source: one token of a pool. Its
// [TokenSource.Request] says which token, and [TokenSource.Pool] its pool,
// whose [Pool.Stats] counts the tokens held and dropped.
type Observer struct {
	// FetchStart is called when a fetch begins: the source has no usable
	// token, or a background refresh is due, and it will take a token from
	// Config.Cache or the token endpoint. The context it returns (derived
	// from ctx, for example with a span in it) is the fetch's context: its
	// attempts' contexts and the token requests derive from it, and it is
	// passed to FetchDone and given to waiters in [WaitInfo.Fetch]. nil
	// means ctx.
	FetchStart func(ctx context.Context, info FetchStartInfo) context.Context
	// FetchDone is called when that fetch ends, with its outcome.
	FetchDone func(ctx context.Context, info FetchDoneInfo)
	// AttemptStart is called before each token request of a fetch; the
	// context it returns (nil means ctx) is the request's context, so that
	// an instrumented Config.HTTPClient sees it.
	AttemptStart func(ctx context.Context, info AttemptStartInfo) context.Context
	// AttemptDone is called when the token request's answer has been read,
	// or the request failed.
	AttemptDone func(ctx context.Context, info AttemptDoneInfo)
	// Wait is called when a caller that found no usable token stops
	// waiting for a fetch, with the caller's context.
	Wait func(ctx context.Context, info WaitInfo)
	// Invalidate is called when [TokenSource.Invalidate] is given the
	// current token, whether or not it takes effect.
	Invalidate func(info InvalidateInfo)
	// CacheError is called when Config.Cache fails (the source then goes
	// on without it).
	CacheError func(info CacheErrorInfo)
	// Limits is called for every answer of the token endpoint that carried
	// rate-limit or quota headers, 200 and 429 alike.
	Limits func(info LimitsInfo)
	// Closed is called once, at the end of [TokenSource.Close] (or when
	// its pool drops it).
	Closed func(info ClosedInfo)
	// CertificateExpiring is called once per client certificate
	// (Config.ClientCertFile) that has less than a tenth of its validity
	// left and has not been renewed.
	CertificateExpiring func(info CertificateInfo)
}

// FetchReason is why a fetch started.
type FetchReason int

const (
	// FetchFirst: the source never had a token.
	FetchFirst FetchReason = iota
	// FetchRefresh: a background refresh of a token in its refresh window.
	FetchRefresh
	// FetchExpired: the token expired (or passed its expiry skew) without
	// being refreshed, as in a source that was idle.
	FetchExpired
	// FetchInvalidated: [TokenSource.Invalidate] dropped the token.
	FetchInvalidated
)

// String returns "first", "refresh", "expired" or "invalidated".
func (r FetchReason) String() string {
	switch r {
	case FetchFirst:
		return "first"
	case FetchRefresh:
		return "refresh"
	case FetchExpired:
		return "expired"
	case FetchInvalidated:
		return "invalidated"
	}
	return "unknown"
}

// Origin is where a fetch found its token.
type Origin int

const (
	// OriginNone: the fetch found no token (it failed).
	OriginNone Origin = iota
	// OriginEndpoint: a token request to the token endpoint.
	OriginEndpoint
	// OriginCache: Config.Cache, where another source or process had
	// stored a fresher token.
	OriginCache
)

// String returns "none", "endpoint" or "cache".
func (o Origin) String() string {
	switch o {
	case OriginNone:
		return "none"
	case OriginEndpoint:
		return "endpoint"
	case OriginCache:
		return "cache"
	}
	return "unknown"
}

// FetchStartInfo describes a fetch that is starting.
type FetchStartInfo struct {
	Source *TokenSource
	Reason FetchReason
}

// FetchDoneInfo describes a fetch that ended: the fetch as it started,
// and its outcome.
type FetchDoneInfo struct {
	FetchStartInfo
	// Origin is where the token came from; OriginNone if Err is set.
	Origin Origin
	// Attempts is the number of token requests sent, nonce retries
	// included; 0 when the token came from the cache, or when none could
	// be sent (a quota is exhausted).
	Attempts int
	// NonceRetries is how many of them repeated a request with the DPoP
	// nonce the server asked for.
	NonceRetries int
	// StatusCode is the last answer's HTTP status, 0 if none came.
	StatusCode int
	// Err is nil on success; otherwise what the waiters get (a
	// *TokenError, a *QuotaError or ErrClosed).
	Err error
	// Duration is how long the fetch took.
	Duration time.Duration
	// Expiry is the new token's expiry, on success.
	Expiry time.Time
}

// AttemptStartInfo describes a token request about to be sent.
type AttemptStartInfo struct {
	Source *TokenSource
	// Attempt counts the fetch's attempts from 1; a nonce retry has its
	// attempt's number.
	Attempt int
	// NonceRetry reports that this request repeats the previous one with
	// the DPoP nonce the server asked for (RFC 9449 section 8): the
	// protocol, not a failure.
	NonceRetry bool
}

// AttemptDoneInfo describes a token request that ended: the request as
// it started, and its outcome.
type AttemptDoneInfo struct {
	AttemptStartInfo
	// StatusCode is the HTTP status, 0 if no answer came.
	StatusCode int
	// Err is nil if the answer held a token; else a *TokenError (or a
	// *QuotaError when it said a quota is used up).
	Err error
	// NonceRequired reports that the answer (an error) asked for a DPoP
	// nonce: the request is repeated at once with it, and this answer is
	// not a failure.
	NonceRequired bool
	// Duration is from sending the request to reading the answer.
	Duration time.Duration
	// Retry reports that the fetch makes another attempt after this
	// failed one, in RetryDelay. It is false when the answer held a token,
	// when the fetch ends with Err (retrying cannot help, or no attempt
	// or time is left), and with NonceRequired (the request is repeated
	// at once).
	Retry bool
	// RetryDelay is how long the fetch waits before that attempt: its
	// backoff, or the endpoint's Retry-After if longer.
	RetryDelay time.Duration
	// RetryWindow is, with Retry, the longest the fetch can go on
	// retrying: the longest backoffs of the attempts left, within the
	// fetch's deadline.
	RetryWindow time.Duration
	// MaxAttempts is the most attempts a fetch makes
	// (Config.MaxAttempts).
	MaxAttempts int
}

// WaitInfo describes a caller that waited for a fetch.
type WaitInfo struct {
	Source *TokenSource
	// Reason is why the caller found no usable token: FetchFirst,
	// FetchExpired or FetchInvalidated (never FetchRefresh: a token in its
	// refresh window is handed out without waiting).
	Reason FetchReason
	// Duration is how long the caller waited.
	Duration time.Duration
	// Err is what the caller got: nil (a token), the fetch's error, or a
	// *WaitError when its context ended first.
	Err error
	// Fetch is the context of the fetch the caller waited for, as
	// FetchStart returned it, so that the caller's span can link to the
	// fetch's; nil if there was none (another fetch had just installed a
	// token) or it is not known.
	Fetch context.Context
}

// InvalidateInfo describes a call of [TokenSource.Invalidate] with the
// current token.
type InvalidateInfo struct {
	Source *TokenSource
	// Applied is false when the invalidation was ignored because the last
	// one was too recent (Config.MinInvalidateInterval, or its backoff).
	Applied bool
}

// CacheErrorInfo describes a failed Config.Cache operation.
type CacheErrorInfo struct {
	Source *TokenSource
	// Op is "get", "set", "lease" (taking the fetch lease, or a lease in
	// the cache ignored as no live holder's), "keep_alive" (keeping it) or
	// "release".
	Op  string
	Err error
}

// LimitsInfo carries the rate-limit and quota headers of one answer.
type LimitsInfo struct {
	Source     *TokenSource
	StatusCode int
	// RateLimit is the tenant-wide rate limit, nil if the answer had no
	// X-RateLimit-* headers. Quotas is nil if it had no Auth0 quota
	// headers. Both are shared: do not modify them.
	RateLimit *RateLimit
	Quotas    *Quotas
}

// ClosedInfo describes a source that was closed, or dropped by its pool.
type ClosedInfo struct {
	Source *TokenSource
}

// CertificateInfo describes a client certificate.
type CertificateInfo struct {
	// Pool is the pool whose client presents it.
	Pool *Pool
	// Thumbprint is its RFC 8705 thumbprint (base64url SHA-256), as a
	// bound token's cnf.x5t#S256 names it.
	Thumbprint string
	// NotAfter is when it expires.
	NotAfter time.Time
}

// ctxKey keys the fetch in progress in its own context.
type ctxKey struct{}

// flight is one fetch as the observer sees it: created only when there is
// an observer, and owned by the fetch's goroutine (attempts is counted
// there), except ctx, which waiters read once the fetch is over.
type flight struct {
	reason       FetchReason
	ctx          context.Context // as FetchStart returned it
	start        time.Time
	attempts     int
	nonceRetries int
	status       int
}

// The methods below tell o, which may be nil (no Observer), what
// happened; each skips the functions that are not set.

// fetchStart tells o that s starts a fetch for reason (which it computes
// only if o is set), and returns the fetch's context and its flight (nil
// without an observer).
func (o *Observer) fetchStart(ctx context.Context, s *TokenSource, reason func() FetchReason) (context.Context, *flight) {
	if o == nil {
		return ctx, nil
	}
	fl := &flight{reason: reason(), start: s.c.clock.Now()}
	if o.FetchStart != nil {
		if c := o.FetchStart(ctx, FetchStartInfo{Source: s, Reason: fl.reason}); c != nil {
			ctx = c
		}
	}
	ctx = context.WithValue(ctx, ctxKey{}, fl)
	fl.ctx = ctx
	return ctx, fl
}

// fetchDone tells o how the fetch of fl ended: with h from origin, or err.
func (o *Observer) fetchDone(s *TokenSource, fl *flight, h *heldToken, origin Origin, err error) {
	if fl == nil || o.FetchDone == nil {
		return
	}
	info := FetchDoneInfo{FetchStartInfo: FetchStartInfo{Source: s, Reason: fl.reason}, Origin: origin, Attempts: fl.attempts,
		NonceRetries: fl.nonceRetries, StatusCode: fl.status, Err: err, Duration: s.c.clock.Now().Sub(fl.start)}
	if err != nil {
		info.Origin = OriginNone
	} else if h != nil {
		info.Expiry = h.entry.Expiry
	}
	o.FetchDone(fl.ctx, info)
}

// attemptStart tells o that a token request is about to be sent, and
// returns the request's context and when it starts.
func (o *Observer) attemptStart(ctx context.Context, s *TokenSource, a AttemptStartInfo) (context.Context, time.Time) {
	if o == nil {
		return ctx, time.Time{}
	}
	if fl, _ := ctx.Value(ctxKey{}).(*flight); fl != nil {
		fl.attempts++
		if a.NonceRetry {
			fl.nonceRetries++
		}
	}
	if o.AttemptStart != nil {
		if c := o.AttemptStart(ctx, a); c != nil {
			ctx = c
		}
	}
	return ctx, s.c.clock.Now()
}

// attemptDone tells o how the token request a, started at start, ended:
// with a token (err nil) or err, which asked for a DPoP nonce if nonce;
// next is what the fetch does after it.
func (o *Observer) attemptDone(ctx context.Context, s *TokenSource, a AttemptStartInfo, start time.Time, err error, nonce bool, next nextAttempt) {
	if o == nil {
		return
	}
	status := http.StatusOK
	if err != nil {
		status = 0
		if te := (*TokenError)(nil); errors.As(err, &te) {
			status = te.StatusCode
		}
	}
	if fl, _ := ctx.Value(ctxKey{}).(*flight); fl != nil {
		fl.status = status
	}
	if o.AttemptDone != nil {
		info := AttemptDoneInfo{AttemptStartInfo: a, StatusCode: status,
			Err: err, NonceRequired: nonce, Duration: s.c.clock.Now().Sub(start), MaxAttempts: s.c.cfg.MaxAttempts}
		if next.retry {
			info.Retry, info.RetryDelay, info.RetryWindow = true, next.delay, next.window
		}
		o.AttemptDone(ctx, info)
	}
}

// waitStart is a caller starting to wait, as the observer will be told.
type waitStart struct {
	at     time.Time
	reason FetchReason
}

// startWait notes when and why a caller of s starts waiting, if o has
// Wait to tell.
func (o *Observer) startWait(s *TokenSource) waitStart {
	if o == nil || o.Wait == nil {
		return waitStart{}
	}
	return waitStart{at: s.c.clock.Now(), reason: s.fetchReason(false)}
}

// waited tells o a caller stopped waiting, with err (nil: a token). fl is
// the flight it waited for if known, else the one in progress.
func (o *Observer) waited(ctx context.Context, s *TokenSource, start waitStart, fl *flight, known bool, err error) {
	if o == nil || o.Wait == nil {
		return
	}
	if !known {
		fl = s.wait.flight.Load()
	}
	info := WaitInfo{Source: s, Reason: start.reason, Duration: s.c.clock.Now().Sub(start.at), Err: err}
	if fl != nil {
		info.Fetch = fl.ctx
	}
	o.Wait(ctx, info)
}

func (o *Observer) invalidated(s *TokenSource, applied bool) {
	if o != nil && o.Invalidate != nil {
		o.Invalidate(InvalidateInfo{Source: s, Applied: applied})
	}
}

func (o *Observer) cacheError(s *TokenSource, op string, err error) {
	if o != nil && o.CacheError != nil {
		o.CacheError(CacheErrorInfo{Source: s, Op: op, Err: err})
	}
}

func (o *Observer) limits(s *TokenSource, status int, rl *RateLimit, q *Quotas) {
	if o != nil && o.Limits != nil && (rl != nil || q != nil) {
		o.Limits(LimitsInfo{Source: s, StatusCode: status, RateLimit: rl, Quotas: q})
	}
}

func (o *Observer) closed(s *TokenSource) {
	if o != nil && o.Closed != nil {
		o.Closed(ClosedInfo{Source: s})
	}
}

func (o *Observer) certificateExpiring(p *Pool, v *certValue) {
	if o != nil && o.CertificateExpiring != nil {
		o.CertificateExpiring(CertificateInfo{Pool: p, Thumbprint: v.thumb, NotAfter: v.notAfter})
	}
}
