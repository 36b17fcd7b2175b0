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
	"github.com/m2mtoken/m2mtoken/internal/dpop"
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
	c    *client      // what every token of the pool shares (client.go)
	pool *Pool        // the pool that holds it (pool.go)
	req  TokenRequest // owned: never modified after the source is made
	// reqKey is the cache key without the credential, which may change
	// (see cachekey.go).
	reqKey string
	log    *slog.Logger // the client's, with the request when Config.Logger is set

	// fresh is the current token while it is fresh, else nil: the hot
	// path loads it, and used. cur is the current token while it is
	// usable (fresh or stale), else nil. Both are written under mu, and
	// read without it. used is set when the token is handed out, and
	// cleared by the pool's eviction hand: a source not used since the
	// hand last passed is the one dropped.
	fresh atomic.Pointer[oauth2.Token]
	used  atomic.Bool
	cur   atomic.Pointer[heldToken]

	// mu guards the state transitions of refresh.go (a token installed,
	// stale, expired, invalidated or dropped, and the timers that move
	// it), and the fields of life and inv that say so.
	mu   sync.Mutex
	life life         // its place in its pool, and its end
	inv  invalidation // what Invalidate did last (invalidate.go)

	fetches fetchGroup                // the one fetch in flight (singlefetch.go)
	stats   counters                  // what Stats reports; atomics
	wait    waitReport                // what a caller that gives up waiting is told; atomics
	perm    heldError                 // a permanent error about this request alone (failures.go); its own lock
	gets    getOutage                 // failed Cache.Get calls in a row (cachehealth.go); its own lock
	auth    atomic.Pointer[authValue] // the current token's Authorization value, for Transport
}

// life is a source's place in its pool and its end. mu guards the
// setting of dropped, cancelFetch, and bg's Add; the pool's lock guards
// ring.
type life struct {
	id   string // the pool's lookup key of the request (requestid.go)
	ring int    // index in the pool's ring
	solo bool   // made by New: closing it closes its pool
	// dropped is set, under mu, once the source is closed or dropped from
	// its pool; it is read under mu, and without it by lookups that find
	// the source in the pool's snapshot.
	dropped     atomic.Bool
	bg          sync.WaitGroup     // background refreshes and fetches; Add under mu
	cancelFetch context.CancelFunc // the fetch in flight's, for Close
}

// counters are what [TokenSource.Stats] reports of one source.
type counters struct {
	requests, failures, cacheHits, refreshes atomic.Uint64
	// joins counts callers that joined a fetch (their own or another's),
	// flights the fetches that ran: Collapsed is the difference.
	joins, flights atomic.Uint64
	// waits counts callers that found no usable token after the first
	// one was installed (hadToken), and so waited for a fetch.
	waits    atomic.Uint64
	hadToken atomic.Bool
}

// waitReport is what a caller whose context ends before the fetch does
// is told (see [WaitError]), and the fetch in progress as an observer
// sees it (observer.go).
type waitReport struct {
	lastErr   atomic.Pointer[TokenError]  // the last failed attempt
	waitingOn atomic.Pointer[LeaseInfo]   // another holder's lease, while the fetch waits on it
	sending   atomic.Pointer[sentAttempt] // the token request in flight
	flight    atomic.Pointer[flight]      // the fetch in progress, with an observer
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
	s.life.solo = true
	return s, nil
}

// newToken returns the source of one token of c for req (already
// validated and owned).
func newToken(p *Pool, req TokenRequest, id string) *TokenSource {
	c := p.c
	s := &TokenSource{c: c, pool: p, req: req, reqKey: c.requestKey(&req), log: c.log}
	s.life.id = id
	if c.cfg.Logger != nil && p.many {
		s.log = c.log.With(slog.String("audience", req.Audience), slog.String("organization", req.Organization))
	}
	return s
}

// Token returns a usable token, fetching one if there is none. It is
// TokenContext with [context.Background]: it waits for a fetch at most
// Config.FetchTimeout. The returned token is shared: do not modify it.
func (s *TokenSource) Token() (*oauth2.Token, error) {
	// TokenContext's fast path, repeated to save a call: one load, and
	// one more of used, which the slow path sets for the pool's eviction
	// hand.
	if tok := s.fresh.Load(); tok != nil && s.used.Load() {
		return tok, nil
	}
	return s.tokenSlow(context.Background())
}

// TokenContext returns a usable token. A fresh or stale token is returned
// at once (a stale one also starts a background refresh); otherwise the
// caller waits for the one fetch in flight, until ctx is done. The fetch
// itself is not cancelled with ctx: it goes on for the other callers.
// The returned token is shared: do not modify it.
func (s *TokenSource) TokenContext(ctx context.Context) (*oauth2.Token, error) {
	if tok := s.fresh.Load(); tok != nil && s.used.Load() {
		return tok, nil
	}
	return s.tokenSlow(ctx)
}

// Invalidate drops tok if it is still the current token, so that the next
// call fetches a new one: for a token the API rejected (revoked, or signed
// with a rotated key). It compares before it drops: fifty concurrent
// invalidations of one token drop it once and cost one fetch, and a stale
// invalidation never drops a newer token. A token that another holder still
// has in Config.Cache is not taken from there again.
//
// Invalidations take effect at most once per Config.MinInvalidateInterval;
// one that comes sooner is logged and ignored, so that an API that rejects
// every token cannot cost one token request per API request. While the
// replacements keep being rejected, the interval doubles, up to an hour
// (see [Stats].InvalidateBackoff), and returns to
// MinInvalidateInterval once no invalidation has come for twice the
// interval.
func (s *TokenSource) Invalidate(tok *oauth2.Token) {
	if tok == nil {
		return
	}
	if current, applied := s.invalidate(tok); current {
		s.c.obs.invalidated(s, applied)
	}
}

// Close stops the source's timers and background work and waits for them.
// Callers waiting for a fetch get [ErrClosed]; later calls too. Close does
// not close Config.HTTPClient or Config.Cache.
//
// A source from [New] is a pool of one: Close closes that pool, and with
// it the idle connections of the transports it made (the one under
// [TokenSource.Client] and, when Config.HTTPClient is nil, the one for
// token requests). A source from [Pool.Source] is dropped from its pool
// alone: the pool and its other tokens go on, and asking the pool again
// for the same request makes a new source.
func (s *TokenSource) Close() error {
	if s.life.solo {
		return s.pool.Close()
	}
	s.pool.forget(s)
	if s.drop() {
		s.finish()
	}
	return nil
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// defaultRequest reports whether the source's request is its pool's
// default, Config's (as every source from New's is).
func (s *TokenSource) defaultRequest() bool { return s.life.solo || s.life.id == s.pool.defID }

// CacheKey returns the key under which the source stores its token in
// [Config.Cache]: sources share a token exactly when their keys are equal.
// A key identifies all of these, and reveals none of them:
//
//   - the token URL, the client ID and the authentication method;
//   - the request: audience, scopes (a set: order, repeats and empty ones
//     do not count), organization and further parameters;
//   - with Config.DPoPKey, the key's thumbprint: a DPoP-bound token is
//     usable only with its key;
//   - with Config.Cache, the credential: the public key and key ID for
//     Private Key JWT, a slow, salted hash of the secret, or the identity
//     a client assertion proves (its issuer and subject, not its bytes,
//     which the platform rewrites), so that a token goes only to a holder
//     of the credential it was issued for, and a rotated or mistyped
//     secret misses the cache instead of taking a token another
//     credential earned.
//
// It is "m2mtoken-" (or "m2mtoken-dpop-") and 32 hex digits: safe as a
// file name or a Redis key. A credential followed in its file changes the
// key when it changes (the token in use is kept until it is replaced);
// CacheKey is the key for the credential as last read. With
// GetClientAssertion, before the first token request it is the key
// without the credential, which no token is stored under.
func (s *TokenSource) CacheKey() string {
	return s.c.cacheKeyFor(s.reqKey, s.c.cred.last(), s.c.cert.now())
}

// TokenURL returns the URL token requests go to: Config.TokenURL, or the
// one Config.Domain means (https://DOMAIN/oauth/token), normalized; or
// Config.MTLSTokenURL when set.
func (s *TokenSource) TokenURL() string { return s.c.tokenURL }

// String describes the source without any secret.
func (s *TokenSource) String() string {
	if s.req.Organization != "" {
		return fmt.Sprintf("m2mtoken.TokenSource{token_url:%q client_id:%q audience:%q organization:%q}", s.c.tokenURL, s.c.cfg.ClientID, s.req.Audience, s.req.Organization)
	}
	return fmt.Sprintf("m2mtoken.TokenSource{token_url:%q client_id:%q audience:%q}", s.c.tokenURL, s.c.cfg.ClientID, s.req.Audience)
}

// Format makes every fmt verb print String, so that no verb reaches the
// secret inside.
func (s *TokenSource) Format(f fmt.State, _ rune) { io.WriteString(f, s.String()) }

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
	// ClientCertificateExpiry is when the client certificate in use
	// (Config.ClientCertFile) expires; zero without one.
	ClientCertificateExpiry time.Time
}

// Stats returns a snapshot of the source's counters.
func (s *TokenSource) Stats() Stats {
	st := Stats{
		TokenRequests:       s.stats.requests.Load(),
		Failures:            s.stats.failures.Load(),
		CacheHits:           s.stats.cacheHits.Load(),
		BackgroundRefreshes: s.stats.refreshes.Load(),
		Waits:               s.stats.waits.Load(),
		RateLimit:           s.c.rateLimit.Load(),
		Quotas:              s.c.quotas.Load(),
	}
	if j, f := s.stats.joins.Load(), s.stats.flights.Load(); j > f {
		st.Collapsed = j - f
	}
	if h := s.cur.Load(); h != nil {
		st.Expiry = h.entry.Expiry
	}
	st.InvalidateBackoff, st.InvalidateBackoffReason = s.invalidateBackoff()
	if s.c.cert != nil {
		if cv := s.c.cert.cur.Load(); cv != nil {
			st.ClientCertificateExpiry = cv.notAfter
		}
	}
	return st
}

// Client returns an [http.Client] whose requests carry a token from s and
// recover from a revoked one (see [Transport]). Its base transport is a
// clone of [http.DefaultTransport] that keeps up to 100 idle connections
// per host instead of 2, for many concurrent calls to one API, and trusts
// Config.CAFile besides the system's CAs, as token requests do. Every call
// returns a client over the same transport, so they share connections.
//
// To keep an existing client's timeouts, proxy or TLS settings (mTLS to the
// API, say), wrap its transport instead:
//
//	c := *existing
//	c.Transport = &m2mtoken.Transport{Source: s, Base: existing.Transport}
//
// The tokens of a [Pool] share that base transport.
func (s *TokenSource) Client() *http.Client {
	return &http.Client{Transport: &Transport{Source: s, Base: s.c.apiTransport()}}
}

// ClientID is the configured Config.ClientID. With Audience, Organization
// and TokenURL it identifies the source, for an observer's labels; none is
// secret.
func (s *TokenSource) ClientID() string { return s.c.cfg.ClientID }

// Request returns the [TokenRequest] the source's token is for (a copy).
func (s *TokenSource) Request() TokenRequest { return s.req.clone() }

// Pool returns the pool the source belongs to (for a source from [New],
// its pool of one).
func (s *TokenSource) Pool() *Pool { return s.pool }

// DPoPThumbprint returns the RFC 7638 thumbprint of Config.DPoPKey (the
// cnf.jkt of the source's tokens), or "" without a key. It is public: use
// it to register or recognise the key.
func (s *TokenSource) DPoPThumbprint() string {
	if s.c.dpop == nil {
		return ""
	}
	return s.c.dpop.key.Thumbprint()
}

// AuthHeaders returns the headers that authorize one request, method to
// rawURL: Authorization, and for a DPoP-bound token a DPoP proof for that
// request (with the API's last nonce, if it gave one). A proof is good for
// one request: call AuthHeaders for each. It is for callers that cannot
// use [TokenSource.Client] or [Transport] (gRPC, a shell via the command);
// unlike Transport it cannot follow a nonce challenge or a revoked token.
func (s *TokenSource) AuthHeaders(ctx context.Context, method, rawURL string) (http.Header, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("m2mtoken: AuthHeaders: %q is not an absolute URL", rawURL)
	}
	tok, err := s.TokenContext(ctx)
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	if !isDPoP(tok) {
		h.Set("Authorization", tok.Type()+" "+tok.AccessToken)
		return h, nil
	}
	if method == "" {
		method = http.MethodGet
	}
	htu, origin := dpop.HTU(u)
	proof, err := s.c.dpop.key.Proof(method, htu, s.c.dpop.apiNonce(origin), dpop.ATH(tok.AccessToken), s.c.clock.Now())
	if err != nil {
		return nil, fmt.Errorf("m2mtoken: signing the DPoP proof: %w", err)
	}
	h.Set("Authorization", tokenTypeDPoP+" "+tok.AccessToken)
	h.Set("DPoP", proof)
	return h, nil
}
