package m2mtoken

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"

	"github.com/m2mtoken/m2mtoken/internal/clock"
)

// TokenSource is a cached, self-refreshing source of client-credentials
// tokens. It is an [oauth2.TokenSource]. Create it with [New]; it is safe
// for concurrent use.
//
// A TokenSource is one token's life: its states, timers, single fetch,
// backoff and invalidation. What every token of one application shares
// (the endpoint, client authentication, HTTP connections, DPoP key,
// quotas, client errors) is its client's, which a [Pool] holds; a source
// from [New] is a pool of one.
type TokenSource struct {
	*client
	pool *Pool
	req  TokenRequest // owned: never modified after the source is made
	key  string       // the cache key
	id   string       // the pool's lookup key of req
	log  *slog.Logger // the client's, with the request when Config.Logger is set
	ring int          // index in the pool's ring, under the pool's lock
	solo bool         // made by New: closing it closes its pool

	// fresh is the current token while it is fresh, else nil: the hot path
	// is one load of it. cur is the current token while it is usable
	// (fresh or stale), else nil. Timers move a token out of both.
	fresh atomic.Pointer[oauth2.Token]
	cur   atomic.Pointer[heldToken]
	// used is set when the token is handed out, and cleared by the pool's
	// eviction hand: a source not used since the hand last passed is the
	// one dropped.
	used atomic.Bool
	// dropped is set once the source is closed or dropped from its pool,
	// for lookups that find it in the pool's snapshot.
	dropped atomic.Bool

	group fetchGroup

	mu          sync.Mutex
	closed      bool
	bg          sync.WaitGroup     // background refreshes and fetches; Add under mu
	cancelFetch context.CancelFunc // the fetch in flight's, for Close
	permErr     heldError          // a permanent error about this request alone
	lastForced  time.Time          // when Invalidate last dropped a token
	invalidated string             // the access token last dropped by Invalidate

	// invBackoff backs off invalidations that keep getting 401 (under mu).
	invBackoff invalidateBackoff

	requests, failures, cacheHits, joins, flights, refreshes atomic.Uint64
	lastErr                                                  atomic.Pointer[TokenError]  // the last failed attempt, for WaitError
	waitingOn                                                atomic.Pointer[LeaseInfo]   // another holder's lease, while a fetch waits on it
	sending                                                  atomic.Pointer[sentAttempt] // this source's token request in flight, for WaitError
	getOutage                                                getOutage                   // failed Cache.Get calls in a row (cachehealth.go)

	// waits counts callers that found no usable token after the first
	// one was installed (hadToken), and so waited for a fetch.
	waits    atomic.Uint64
	hadToken atomic.Bool

	// The fetch in progress (with an observer; see observer.go), and
	// whether the last token was dropped by Invalidate (under mu), to say
	// why a fetch starts.
	flight          atomic.Pointer[flight]
	afterInvalidate bool

	// auth caches the Authorization value for the current token, for
	// Transport; httpClient is Client()'s.
	auth       atomic.Pointer[authValue]
	httpClient atomic.Pointer[http.Client]
}

// New validates cfg and returns a TokenSource. It makes no request: the
// first token is fetched by the first call that needs one.
//
// The source is a [Pool] of one, for cfg's Audience, Scopes, Organization
// and EndpointParams; its Close closes that pool.
func New(cfg Config) (*TokenSource, error) { return newSource(cfg, clock.Real{}) }

func newSource(cfg Config, clk clock.Clock) (*TokenSource, error) {
	p, err := newPool(cfg, clk, false)
	if err != nil {
		return nil, err
	}
	s, err := p.Source(p.def)
	if err != nil {
		return nil, err
	}
	s.solo = true
	return s, nil
}

// newToken returns the source of one token of c for req (already
// validated and owned).
func newToken(p *Pool, req TokenRequest, id string) *TokenSource {
	c := p.c
	s := &TokenSource{client: c, pool: p, req: req, id: id, key: c.key(&req), log: c.log}
	if c.logged && p.many {
		s.log = c.log.With(slog.String("audience", req.Audience), slog.String("organization", req.Organization))
	}
	return s
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// CacheKey returns the key under which the source stores its token in
// [Config.Cache]. It identifies the endpoint, client, audience, scopes,
// organization, parameters, method and, with a Config.Cache, the
// credential, and reveals none of them.
func (s *TokenSource) CacheKey() string { return s.key }

// TokenURL returns the URL token requests go to: Config.TokenURL, or the
// one Config.Domain means (https://DOMAIN/oauth/token), normalized; or
// Config.MTLSTokenURL when set.
func (s *TokenSource) TokenURL() string { return s.tokenURL }

// String describes the source without any secret.
func (s *TokenSource) String() string {
	if s.req.Organization != "" {
		return fmt.Sprintf("m2mtoken.TokenSource{token_url:%q client_id:%q audience:%q organization:%q}", s.tokenURL, s.cfg.ClientID, s.req.Audience, s.req.Organization)
	}
	return fmt.Sprintf("m2mtoken.TokenSource{token_url:%q client_id:%q audience:%q}", s.tokenURL, s.cfg.ClientID, s.req.Audience)
}

// Format makes every fmt verb print String, so that no verb reaches the
// secret inside.
func (s *TokenSource) Format(f fmt.State, _ rune) { io.WriteString(f, s.String()) }

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

// Stats is a snapshot of a source's counters.
type Stats struct {
	// TokenRequests counts HTTP requests sent to the token endpoint,
	// retries included; Failures counts those that did not yield a token
	// (a DPoP use_dpop_nonce answer that is followed is not a failure).
	TokenRequests, Failures uint64
	// CacheHits counts fetches answered by Config.Cache with a token that
	// another source or process had stored, instead of a token request.
	CacheHits uint64
	// Collapsed counts callers that waited on a fetch another caller had
	// already started, instead of starting their own.
	Collapsed uint64
	// BackgroundRefreshes counts refreshes started because the token had
	// entered its refresh window.
	BackgroundRefreshes uint64
	// Waits counts calls that found no usable token after the source's
	// first token, and so waited for a fetch: a token that expired before
	// its background refresh succeeded (an endpoint down for longer than
	// the refresh window), an invalidated one, or a source left idle past
	// expiry. While refreshes keep up it stays 0. The wait for the very
	// first token is not counted.
	Waits uint64
	// Expiry is the current token's expiry; zero if there is no usable token.
	Expiry time.Time
	// RateLimit is the tenant-wide rate limit from the last answer that
	// had X-RateLimit-* headers; nil if none had. The answer may be to
	// another token of the source's pool: readings are the client's.
	RateLimit *RateLimit
	// Quotas are Auth0's per-client and per-organization token quotas
	// from the last answer that had quota headers (to any token of the
	// pool); nil if none had. Do not modify them: they are shared.
	Quotas *Quotas
	// InvalidateBackoff is the least time between two invalidations that
	// take effect (see [TokenSource.Invalidate]): Config.MinInvalidateInterval,
	// doubled for each token the API rejected soon after the one before,
	// up to an hour. InvalidateBackoffReason says why it is longer than
	// MinInvalidateInterval; it is empty when it is not.
	InvalidateBackoff       time.Duration
	InvalidateBackoffReason string
}

// Stats returns a snapshot of the source's counters.
func (s *TokenSource) Stats() Stats {
	st := Stats{
		TokenRequests:       s.requests.Load(),
		Failures:            s.failures.Load(),
		CacheHits:           s.cacheHits.Load(),
		BackgroundRefreshes: s.refreshes.Load(),
		Waits:               s.waits.Load(),
		RateLimit:           s.rateLimit.Load(),
		Quotas:              s.quotas.Load(),
	}
	if j, f := s.joins.Load(), s.flights.Load(); j > f {
		st.Collapsed = j - f
	}
	if h := s.cur.Load(); h != nil {
		st.Expiry = h.src.Expiry
	}
	s.mu.Lock()
	st.InvalidateBackoff = max(s.invBackoff.current(s.cfg.MinInvalidateInterval), 0)
	st.InvalidateBackoffReason = s.invBackoff.reason
	s.mu.Unlock()
	return st
}
