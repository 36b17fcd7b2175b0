package m2mtoken

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"

	"github.com/m2mtoken/m2mtoken/internal/clock"
)

// TokenSource is a cached, self-refreshing source of client-credentials
// tokens. It is an [oauth2.TokenSource]. Create it with [New]; it is safe
// for concurrent use.
type TokenSource struct {
	cfg      Config
	tokenURL string
	key      string
	client   *http.Client
	log      *slog.Logger
	cache    Cache
	clock    clock.Clock
	rand     func() float64
	dpop     *dpopState // nil without Config.DPoPKey

	// fresh is the current token while it is fresh, else nil: the hot path
	// is one load of it. cur is the current entry while it is usable
	// (fresh or stale), else nil. Timers move a token out of both.
	fresh atomic.Pointer[oauth2.Token]
	cur   atomic.Pointer[entry]

	group singleflight.Group
	life  context.Context // cancelled by Close
	stop  context.CancelFunc

	mu          sync.Mutex
	closed      bool
	bg          sync.WaitGroup // background refreshes and fetches; Add under mu
	permErr     error          // a permanent error, returned until permUntil
	permUntil   time.Time
	lastForced  time.Time // when Invalidate last dropped a token
	invalidated string    // the access token last dropped by Invalidate

	// invBackoff backs off invalidations that keep getting 401 (under mu).
	invBackoff invalidateBackoff

	requests, failures, cacheHits, joins, flights, refreshes atomic.Uint64
	rateLimit                                                atomic.Pointer[RateLimit]
	lastErr                                                  atomic.Pointer[TokenError] // the last failed attempt, for WaitError
	waitingOn                                                atomic.Pointer[LeaseInfo]  // another holder's lease, while a fetch waits on it
	getOutage                                                getOutage                  // failed Cache.Get calls in a row (cachehealth.go)

	// waits counts callers that found no usable token after the first
	// one was installed (hadToken), and so waited for a fetch.
	waits    atomic.Uint64
	hadToken atomic.Bool

	quotas     atomic.Pointer[Quotas]
	quotaBlock atomic.Pointer[QuotaError] // an exhausted quota: no token request until it resets

	// The observer (nil if none; see observer.go), the fetch in progress,
	// and whether the last token was dropped by Invalidate (under mu), to
	// say why a fetch starts.
	obs             *Observer
	flight          atomic.Pointer[flight]
	afterInvalidate bool

	clientOnce sync.Once
	httpClient *http.Client
	ownsClient bool           // client's transport is the source's own (Config.HTTPClient was nil)
	roots      *x509.CertPool // the system's CAs and Config.CAFile's, or nil for the system's
}

// New validates cfg and returns a TokenSource. It makes no request: the
// first token is fetched by the first call that needs one.
func New(cfg Config) (*TokenSource, error) { return newSource(cfg, clock.Real{}) }

func newSource(cfg Config, clk clock.Clock) (*TokenSource, error) {
	cfg.Scopes = append([]string(nil), cfg.Scopes...)
	if cfg.EndpointParams != nil {
		cfg.EndpointParams = cloneValues(cfg.EndpointParams)
	}
	tokenURL, err := cfg.withDefaults()
	if err != nil {
		return nil, withNames(err, cfg.FieldNames)
	}
	var roots *x509.CertPool
	if cfg.CAFile != "" {
		if roots, err = loadCAFile(cfg.CAFile); err != nil {
			return nil, withNames(configErr("{CAFile}: %v", err), cfg.FieldNames)
		}
	}
	s := &TokenSource{
		cfg:      cfg,
		tokenURL: tokenURL,
		key:      cacheKey(tokenURL, cfg.ClientID, cfg.Audience, cfg.Scopes, cfg.Organization, cfg.EndpointParams, cfg.AuthMethod),
		cache:    cfg.Cache,
		clock:    clk,
		rand:     rand.Float64,
		log:      cfg.Logger,
		roots:    roots,
	}
	if s.dpop = newDPoP(&s.cfg, tokenURL); s.dpop != nil {
		s.key = dpopCacheKey(s.key, s.dpop.key.Thumbprint())
	}
	// The key also names the credential, so that a shared cache hands a
	// token only to a source holding the credential it was issued for.
	s.key = credentialKey(s.key, tokenURL, cfg)
	if s.cache == nil {
		s.cache = NewMemoryCache()
	}
	if s.cfg.LeaseTTL == 0 {
		s.cfg.LeaseTTL = defaultLeaseTTL
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Observer != nil {
		o := *cfg.Observer
		s.obs = &o
	}
	s.log = s.log.With(slog.String("component", "m2mtoken"), slog.String("token_url", tokenURL), slog.String("client_id", cfg.ClientID))
	base := cfg.HTTPClient
	if base == nil {
		// A transport of its own, so that Close can drop its connections
		// without touching the process's http.DefaultTransport.
		base = &http.Client{Transport: ownTransport(roots)}
		s.ownsClient = true
	}
	c := *base
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	s.client = &c
	s.life, s.stop = context.WithCancel(context.Background())
	return s, nil
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
	return fmt.Sprintf("m2mtoken.TokenSource{token_url:%q client_id:%q audience:%q}", s.tokenURL, s.cfg.ClientID, s.cfg.Audience)
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
	// had X-RateLimit-* headers; nil if none had.
	RateLimit *RateLimit
	// Quotas are Auth0's per-client and per-organization token quotas
	// from the last answer that had quota headers; nil if none had. Do not
	// modify them: they are shared.
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
	if e := s.cur.Load(); e != nil {
		st.Expiry = e.src.Expiry
	}
	s.mu.Lock()
	st.InvalidateBackoff = max(s.invBackoff.current(s.cfg.MinInvalidateInterval), 0)
	st.InvalidateBackoffReason = s.invBackoff.reason
	s.mu.Unlock()
	return st
}
