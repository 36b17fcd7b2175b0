// Pool: one client, many tokens. The map from requests to their sources,
// its bound (MaxTokens, least recently used first), the pool's Token,
// Stats and Close.

package m2mtoken

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"

	"github.com/m2mtoken/m2mtoken/internal/clock"
)

// defaultMaxTokens is Config.MaxTokens' default.
const defaultMaxTokens = 10_000

// Pool is one client (endpoint, credentials, DPoP key, cache, tuning,
// connections, quotas) for any number of tokens: one per [TokenRequest]
// (an audience, scopes, an organization, parameters). A backend that calls
// several APIs with one application, or serves many Auth0 Organizations,
// uses one Pool instead of a map of sources.
//
// Each token is a [TokenSource] with everything a source does (background
// refresh, fleet lease, caches, DPoP, quotas, Observer); what the tokens
// share is the pool's: one bounded connection pool to the token endpoint
// (Config.MaxConnsPerHost), the credential's cache-key digest, the
// endpoint's quota readings, and the errors about the client. An error
// about the client (a wrong secret, the grant type not enabled, the
// client's quota used up) is returned for every token, so that the next
// request of another audience sends nothing; an error about one request
// (an audience with no grant, an invalid scope or organization) holds
// for that token alone; an organization's used-up quota stops that
// organization's tokens alone.
//
// A Pool holds at most Config.MaxTokens tokens: beyond that, the least
// recently used one is dropped (see [Pool.Source]). It sends at most
// Config.NewTokenBurst token requests at once, then Config.NewTokenRate a
// second, for requests it holds no token for, and accepts requests of a
// few KiB at most (see [TokenRequest]): whoever chooses its requests (a
// tenant header mapped to Organization) cannot make it fetch tokens
// without bound. While the token endpoint's rate limit is used up (a 429,
// or X-RateLimit-Remaining: 0), no token of the pool sends a request
// until it resets. Its methods are safe for concurrent use.
type Pool struct {
	c      *client
	def    TokenRequest // the default request, from Config
	defID  string       // its id
	max    int
	many   bool // made by NewPool: tokens' loggers name their request
	spread bool // tokens fetched together spread their refreshes (NewPool)

	// read is a snapshot of m that lookups read without a lock; it may
	// lack the newest sources and still hold dropped ones (whose token is
	// gone: a lookup that finds one takes the locked path). It is taken
	// again once lookups have missed it as often as m has entries.
	read atomic.Pointer[map[string]*TokenSource]

	mu     sync.Mutex
	m      map[string]*TokenSource // by request id: the truth
	misses int                     // lookups read missed since it was taken
	ring   []*TokenSource          // the eviction hand's round
	hand   int
	closed bool

	// newTokens bounds the token requests for requests the pool holds no
	// token for (nil: no bound, and for a source from New).
	newTokens *newTokenLimit

	evictions atomic.Uint64
}

// NewPool validates cfg and returns a pool of tokens for its client. It
// makes no request. cfg's Audience, Scopes, Organization and
// EndpointParams are the default request: the token [Pool.Transport] and
// [Pool.Client] use for a request whose context names none.
//
// Unlike [New], a pool spreads the refreshes of tokens fetched together
// over their lifetime (see [Config.RefreshJitter]): the first refresh of a
// token that callers waited for comes at a random point between a tenth
// of its lifetime and its refresh window, and later ones keep that phase.
func NewPool(cfg Config) (*Pool, error) { return newPool(cfg, clock.Real{}, true) }

func newPool(cfg Config, clk clock.Clock, many bool) (*Pool, error) {
	c, err := newClient(cfg, clk)
	if err != nil {
		return nil, err
	}
	p := &Pool{c: c, max: c.cfg.MaxTokens, many: many, spread: many, m: map[string]*TokenSource{}}
	c.pool = p
	if many {
		p.newTokens = newNewTokenLimit(&c.cfg, clk.Now())
	}
	p.read.Store(&map[string]*TokenSource{})
	p.def = TokenRequest{Audience: c.cfg.Audience, Scopes: c.cfg.Scopes, Organization: c.cfg.Organization, Params: c.cfg.EndpointParams}
	p.defID = string(appendID(nil, &p.def))
	return p, nil
}

// Source returns the source of r's token, the same *TokenSource for equal
// requests while the pool holds it. It makes no request. It refuses r if
// its Params set what the client sets, naming the parameter, or if it is
// larger than a pool accepts (see [TokenRequest]), naming the field, and
// returns [ErrClosed] after [Pool.Close].
//
// When the pool holds Config.MaxTokens tokens, making a new one drops the
// least recently used (as a clock algorithm approximates it: a token not
// handed out since the pool's eviction hand last passed it). Its timers
// stop and its token is forgotten (a shared Config.Cache keeps it). A
// dropped source, like a closed one, answers [ErrClosed] from then on:
// whoever kept it asks the pool again for the request's source, which is
// a new one, and which takes the token from Config.Cache if it has it
// ([Pool.Token] and [Pool.Client] do that themselves). While the bound on
// new tokens (Config.NewTokenRate) is used up, a full pool makes no new
// source: Source returns a [*NewTokenLimitError], so that requests it
// would refuse anyway drop none of the tokens it holds.
func (p *Pool) Source(r TokenRequest) (*TokenSource, error) {
	var buf [idBuf]byte
	id := appendID(buf[:0], &r)
	if s := p.lookup(id); s != nil {
		return s, nil
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	return p.add(r.owned(), string(id))
}

// add makes the source of req under id, unless another caller just did.
func (p *Pool) add(req TokenRequest, id string) (*TokenSource, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	if s := p.m[id]; s != nil {
		p.mu.Unlock()
		return s, nil
	}
	if len(p.ring) >= p.max {
		// Making room drops a token: not for a request the bound on new
		// tokens would refuse anyway.
		if ok, wait := p.newTokens.check(p.c.clock.Now()); !ok {
			p.mu.Unlock()
			return nil, p.newTokenErr(wait, true)
		}
	}
	s := newToken(p, req, id)
	s.used.Store(true)
	var victim *TokenSource
	if len(p.ring) < p.max {
		s.life.ring = len(p.ring)
		p.ring = append(p.ring, s)
	} else {
		victim = p.evict(s)
	}
	p.m[id] = s
	p.mu.Unlock()
	if victim != nil {
		p.evictions.Add(1)
		if victim.drop() {
			// Its fetches were cancelled: they end soon. The observer hears
			// of it once they have.
			go victim.finish()
		}
	}
	return s, nil
}

// evict moves the hand to a source not used since it last passed,
// clearing the marks it passes, and puts s in its place. p.mu is held.
func (p *Pool) evict(s *TokenSource) *TokenSource {
	for {
		if p.hand >= len(p.ring) {
			p.hand = 0
		}
		v := p.ring[p.hand]
		if v.used.Load() {
			v.used.Store(false)
			p.hand++
			continue
		}
		delete(p.m, v.life.id)
		s.life.ring = p.hand
		p.ring[p.hand] = s
		p.hand++
		return v
	}
}

// forget removes s, which is being closed, from the pool.
func (p *Pool) forget(s *TokenSource) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m[s.life.id] != s {
		return
	}
	delete(p.m, s.life.id)
	last := len(p.ring) - 1
	p.ring[s.life.ring] = p.ring[last]
	p.ring[s.life.ring].life.ring = s.life.ring
	p.ring[last] = nil
	p.ring = p.ring[:last]
}

// lookup returns the source held for the request id, or nil.
func (p *Pool) lookup(id []byte) *TokenSource {
	if s := (*p.read.Load())[string(id)]; s != nil && !s.life.dropped.Load() {
		return s
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.m[string(id)]
	if p.misses++; p.misses > len(p.m) {
		// Lookups miss the snapshot: take it again. Its cost, a copy of m,
		// is paid once per as many misses.
		p.misses = 0
		snap := make(map[string]*TokenSource, len(p.m))
		for k, v := range p.m {
			snap[k] = v
		}
		p.read.Store(&snap)
	}
	return s
}

// Token returns a usable token for r, as [TokenSource.TokenContext] of
// its source does. With the token fresh it makes no allocation. If the
// pool drops r's source while the call waits for its token (to make room
// for other requests), the call asks the pool again: it never returns
// [ErrClosed] before [Pool.Close].
func (p *Pool) Token(ctx context.Context, r TokenRequest) (*oauth2.Token, error) {
	var buf [idBuf]byte
	s := (*p.read.Load())[string(appendID(buf[:0], &r))]
	if s != nil {
		if tok := s.fresh.Load(); tok != nil { // a dropped source has none
			if !s.used.Load() {
				s.used.Store(true)
			}
			return tok, nil
		}
		if s.life.dropped.Load() {
			s = nil
		}
	}
	_, tok, err := p.sourceToken(ctx, &r, s)
	return tok, err
}

// maxDropped is how many sources of one request a call lets the pool drop
// under it before it gives up.
const maxDropped = 8

// sourceToken returns a token from s, req's source (nil: the pool's).
// A source the pool drops while the call waits (to make room for other
// requests, or because whoever held it closed it) answers ErrClosed: the
// caller asked the pool, not that source, so the pool is asked again.
func (p *Pool) sourceToken(ctx context.Context, req *TokenRequest, s *TokenSource) (*TokenSource, *oauth2.Token, error) {
	for tries := 1; ; tries++ {
		if s == nil {
			var err error
			if s, err = p.Source(*req); err != nil {
				return nil, nil, err
			}
		}
		tok, err := s.TokenContext(ctx)
		if !errors.Is(err, ErrClosed) || p.isClosed() {
			return s, tok, err
		}
		if err := ctx.Err(); err != nil {
			return s, nil, err
		}
		if tries == maxDropped {
			name, _ := fieldName(p.c.cfg.FieldNames, "MaxTokens")
			return s, nil, fmt.Errorf("m2mtoken: the pool dropped this request's token %d times before it arrived, to make room for others: "+
				"it is asked for more tokens at once than %s (%d) lets it hold; raise it", tries, name, p.max)
		}
		s = nil
	}
}

// dropBound drops the tokens bound to a client certificate other than
// thumb's (see clientcert.go).
func (p *Pool) dropBound(thumb string) {
	p.mu.Lock()
	srcs := append([]*TokenSource(nil), p.ring...)
	p.mu.Unlock()
	for _, s := range srcs {
		s.dropBound(thumb)
	}
}

// isClosed reports whether Close was called.
func (p *Pool) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// tokenRequestKey keys a request in a context.
type tokenRequestKey struct{}

// ctxRequest is a request in a context, with its id computed once.
type ctxRequest struct {
	req TokenRequest
	id  string
}

// WithTokenRequest returns a copy of ctx that names the token a
// [Pool.Transport] or [Pool.Client] authorizes its request with.
func WithTokenRequest(ctx context.Context, r TokenRequest) context.Context {
	r = r.clone()
	return context.WithValue(ctx, tokenRequestKey{}, &ctxRequest{req: r, id: string(appendID(nil, &r))})
}

// contextToken returns a token for the request ctx names, or for the
// default request, and its source, as Token does.
func (p *Pool) contextToken(ctx context.Context) (*TokenSource, *oauth2.Token, error) {
	req, id := &p.def, p.defID
	if cr, _ := ctx.Value(tokenRequestKey{}).(*ctxRequest); cr != nil {
		req, id = &cr.req, cr.id
	}
	s := (*p.read.Load())[id]
	if s != nil {
		if tok := s.fresh.Load(); tok != nil && s.used.Load() { // a dropped source has none
			return s, tok, nil
		}
		if s.life.dropped.Load() {
			s = nil
		}
	}
	return p.sourceToken(ctx, req, s)
}

// Transport returns an [http.RoundTripper] that authorizes each request,
// as [Transport] does, with the token its context names
// ([WithTokenRequest]), or the default request's if it names none. base
// sends the requests; nil means [http.DefaultTransport]. A 401 that says
// the token is bad invalidates that request's token alone. A request whose
// context names a TokenRequest the pool refuses is not sent: RoundTrip
// returns the error.
func (p *Pool) Transport(base http.RoundTripper) http.RoundTripper {
	return &poolTransport{pool: p, t: Transport{Base: base}}
}

// poolTransport is Pool.Transport's: a [Transport] whose source is each
// request's, from its context.
type poolTransport struct {
	pool *Pool
	t    Transport // its Base, and how a request is sent; no Source
}

func (pt *poolTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	s, tok, err := pt.pool.contextToken(req.Context())
	if err != nil {
		return nil, refused(req, err)
	}
	return pt.t.send(s, req, tok)
}

// CloseIdleConnections closes the idle connections of the base, as
// [Transport.CloseIdleConnections] does.
func (pt *poolTransport) CloseIdleConnections() { pt.t.CloseIdleConnections() }

// Client returns an [http.Client] over p.Transport, on a transport tuned
// as [TokenSource.Client]'s (shared by the pool's tokens).
func (p *Pool) Client() *http.Client {
	return &http.Client{Transport: p.Transport(p.c.apiTransport())}
}

// PoolStats is a snapshot of a pool's counters.
type PoolStats struct {
	// Tokens is how many tokens the pool holds.
	Tokens int
	// Evictions counts tokens dropped because the pool held
	// Config.MaxTokens.
	Evictions uint64
	// TokenRequests, Failures, CacheHits, Collapsed, BackgroundRefreshes
	// and Waits are the sums of the tokens' [Stats] of those names, over
	// the tokens the pool holds (those of dropped tokens are gone with
	// them).
	TokenRequests, Failures, CacheHits, Collapsed, BackgroundRefreshes, Waits uint64
	// Expiry is the soonest expiry among the tokens held; zero if none is
	// usable.
	Expiry time.Time
	// RateLimit and Quotas are the client's last readings, and
	// ClientCertificateExpiry its certificate's (see [Stats]).
	RateLimit               *RateLimit
	Quotas                  *Quotas
	ClientCertificateExpiry time.Time
}

// Stats returns a snapshot of the pool's counters. It visits every token.
func (p *Pool) Stats() PoolStats {
	p.mu.Lock()
	srcs := append([]*TokenSource(nil), p.ring...)
	p.mu.Unlock()
	ps := PoolStats{Tokens: len(srcs), Evictions: p.evictions.Load()}
	for _, s := range srcs {
		st := s.Stats()
		ps.TokenRequests += st.TokenRequests
		ps.Failures += st.Failures
		ps.CacheHits += st.CacheHits
		ps.Collapsed += st.Collapsed
		ps.BackgroundRefreshes += st.BackgroundRefreshes
		ps.Waits += st.Waits
		if !st.Expiry.IsZero() && (ps.Expiry.IsZero() || st.Expiry.Before(ps.Expiry)) {
			ps.Expiry = st.Expiry
		}
	}
	ps.RateLimit = p.c.rateLimit.Load()
	ps.Quotas = p.c.quotas.Load()
	if p.c.cert != nil {
		if cv := p.c.cert.cur.Load(); cv != nil {
			ps.ClientCertificateExpiry = cv.notAfter
		}
	}
	return ps
}

// Close closes every token of the pool (see [TokenSource.Close]) and the
// idle connections of the transports the pool made. Later calls of the
// pool and of its sources return [ErrClosed]. It does not close
// Config.HTTPClient or Config.Cache.
func (p *Pool) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	srcs := p.ring
	p.ring, p.m = nil, nil
	p.read.Store(&map[string]*TokenSource{})
	p.mu.Unlock()
	var open []*TokenSource
	for _, s := range srcs {
		if s.drop() {
			open = append(open, s)
		}
	}
	for _, s := range open {
		s.finish()
	}
	p.c.stop()
	p.c.closeIdle()
	return nil
}

// String describes the pool without any secret.
func (p *Pool) String() string {
	return "m2mtoken.Pool{token_url:" + strconv.Quote(p.c.tokenURL) + " client_id:" + strconv.Quote(p.c.cfg.ClientID) + "}"
}

// Format makes every fmt verb print String, so that no verb reaches the
// secret inside.
func (p *Pool) Format(f fmt.State, _ rune) { io.WriteString(f, p.String()) }
