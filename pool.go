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
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"

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
// recently used one is dropped (see [Pool.Source]). Its methods are safe
// for concurrent use.
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

	evictions atomic.Uint64
}

// TokenRequest names one token of a pool's client. Its fields are sent as
// the token request's audience, scope (space-separated), organization and
// further parameters, and all of them are part of the token's cache key:
// two requests that differ in any field never share a token. Scopes are a
// set: their order does not matter.
//
// A request names the whole token: its empty fields are not filled in from
// the pool's default request (Config's Audience, Scopes, Organization and
// EndpointParams), which is used only where no request is given.
type TokenRequest struct {
	// Audience is the identifier of the API the token is for.
	Audience string
	// Scopes are the scopes asked for.
	Scopes []string
	// Organization is an Auth0 Organization's ID or name.
	Organization string
	// Params are further request parameters, such as RFC 8707's
	// "resource". They may not set what the client or another field sets
	// (grant_type, client_id, client_secret, client_assertion*, audience,
	// scope, organization).
	Params url.Values
}

func (r TokenRequest) clone() TokenRequest {
	c := r
	c.Scopes = append([]string(nil), r.Scopes...)
	if r.Params != nil {
		c.Params = cloneValues(r.Params)
	}
	return c
}

// check refuses a request that would override what the client sets,
// naming the first such parameter in sorted order, with the message
// Config.EndpointParams gets, in the request's words.
func (r *TokenRequest) check() error {
	if ce := paramsError(r.Params); ce != nil {
		return errors.New(withNames(ce, func(field string) string {
			if field == "EndpointParams" {
				return "TokenRequest.Params"
			}
			return "TokenRequest." + field
		}).Error())
	}
	return nil
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
	p.read.Store(&map[string]*TokenSource{})
	p.def = TokenRequest{Audience: c.cfg.Audience, Scopes: c.cfg.Scopes, Organization: c.cfg.Organization, Params: c.cfg.EndpointParams}
	p.defID = string(appendID(nil, &p.def))
	return p, nil
}

// DefaultRequest returns the pool's default request (a copy): Config's
// Audience, Scopes, Organization and EndpointParams.
func (p *Pool) DefaultRequest() TokenRequest { return p.def.clone() }

// Source returns the source of r's token, the same *TokenSource for equal
// requests while the pool holds it. It makes no request. It refuses r if
// its Params set what the client sets, naming the parameter, and returns
// [ErrClosed] after [Pool.Close].
//
// When the pool holds Config.MaxTokens tokens, making a new one drops the
// least recently used (as a clock algorithm approximates it: a token not
// handed out since the pool's eviction hand last passed it). Its timers
// stop and its token is forgotten (a shared Config.Cache keeps it). A
// dropped source, like a closed one, answers [ErrClosed] from then on:
// whoever kept it asks the pool again for the request's source, which is
// a new one, and which takes the token from Config.Cache if it has it.
func (p *Pool) Source(r TokenRequest) (*TokenSource, error) {
	var buf [idBuf]byte
	id := appendID(buf[:0], &r)
	if s := p.lookup(id); s != nil {
		return s, nil
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	return p.add(r.clone(), string(id))
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
	s := newToken(p, req, id)
	s.used.Store(true)
	var victim *TokenSource
	if len(p.ring) < p.max {
		s.ring = len(p.ring)
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
		delete(p.m, v.id)
		s.ring = p.hand
		p.ring[p.hand] = s
		p.hand++
		return v
	}
}

// forget removes s, which is being closed, from the pool.
func (p *Pool) forget(s *TokenSource) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m[s.id] != s {
		return
	}
	delete(p.m, s.id)
	last := len(p.ring) - 1
	p.ring[s.ring] = p.ring[last]
	p.ring[s.ring].ring = s.ring
	p.ring[last] = nil
	p.ring = p.ring[:last]
}

// lookup returns the source held for the request id, or nil.
func (p *Pool) lookup(id []byte) *TokenSource {
	if s := (*p.read.Load())[string(id)]; s != nil && !s.dropped.Load() {
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
// its source does. With the token fresh it makes no allocation.
func (p *Pool) Token(ctx context.Context, r TokenRequest) (*oauth2.Token, error) {
	var buf [idBuf]byte
	if s := (*p.read.Load())[string(appendID(buf[:0], &r))]; s != nil {
		if tok := s.fresh.Load(); tok != nil { // a dropped source has none
			if !s.used.Load() {
				s.used.Store(true)
			}
			return tok, nil
		}
		if !s.dropped.Load() {
			return s.TokenContext(ctx)
		}
	}
	s, err := p.Source(r)
	if err != nil {
		return nil, err
	}
	return s.TokenContext(ctx)
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

// source returns the source of the request ctx names, or of the default
// request.
func (p *Pool) source(ctx context.Context) (*TokenSource, error) {
	req, id := &p.def, p.defID
	if cr, _ := ctx.Value(tokenRequestKey{}).(*ctxRequest); cr != nil {
		req, id = &cr.req, cr.id
	}
	if s := (*p.read.Load())[id]; s != nil && !s.dropped.Load() {
		return s, nil
	}
	return p.Source(*req)
}

// Transport returns an [http.RoundTripper] that authorizes each request,
// as [Transport] does, with the token its context names
// ([WithTokenRequest]), or the default request's if it names none. base
// sends the requests; nil means [http.DefaultTransport]. A 401 that says
// the token is bad invalidates that request's token alone. A request whose
// context names a TokenRequest the pool refuses is not sent: RoundTrip
// returns the error.
func (p *Pool) Transport(base http.RoundTripper) http.RoundTripper {
	return &Transport{pool: p, Base: base}
}

// Client returns an [http.Client] over p.Transport, on a transport tuned
// as [TokenSource.Client]'s (shared by the pool's tokens).
func (p *Pool) Client() *http.Client {
	return &http.Client{Transport: p.Transport(p.c.apiTransport())}
}

// PoolStats is a snapshot of a pool's counters.
type PoolStats struct {
	// Stats sums the counters of the tokens the pool holds (those of
	// dropped tokens are gone with them). Its Expiry is the soonest
	// expiry among them; RateLimit and Quotas are the client's last
	// readings.
	Stats
	// Tokens is how many tokens the pool holds.
	Tokens int
	// Evictions counts tokens dropped because the pool held
	// Config.MaxTokens.
	Evictions uint64
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
