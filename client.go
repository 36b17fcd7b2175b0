// The per-client part of a pool: what every token of one application
// shares. The endpoint, client authentication, the credential's cache-key
// digest (derived once), one bounded HTTP client, the DPoP key and
// nonces, Auth0 quota state, and the errors that are about the client
// rather than about one token request.

package m2mtoken

import (
	"context"
	"crypto/x509"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/m2mtoken/m2mtoken/internal/clock"
)

// defaultMaxConnsPerHost is Config.MaxConnsPerHost's default: enough
// token requests in parallel for a burst of first fetches, few enough that
// thousands of tokens never hold thousands of connections.
const defaultMaxConnsPerHost = 16

// client is one application's access to the token endpoint, shared by
// every token of a [Pool]. Its Config holds the pool's default request
// (Audience, Scopes, Organization, EndpointParams); a token's own request
// is its TokenSource's.
type client struct {
	cfg      Config
	tokenURL string
	// cred is the credential, read when a token request is made
	// (credential.go); the cache key names it only with Config.Cache
	// (cachekey.go). cert is the client certificate, or nil
	// (clientcert.go); certChanged, set by the pool, drops the tokens
	// bound to a certificate no longer presented.
	cred    *credential
	cert    *clientCert
	pool    *Pool // the pool whose client this is, for its tokens and events
	apiCert atomic.Pointer[certTransport]
	// certTimer is watchCert's next look, under certMu.
	certMu    sync.Mutex
	certTimer clock.Timer
	http      *http.Client   // sends token requests; never follows redirects
	ownsHTTP  bool           // http's transport is ours (Config.HTTPClient was nil)
	roots     *x509.CertPool // the system's CAs and Config.CAFile's, or nil for the system's
	log       *slog.Logger   // Config.Logger's (tokens' loggers carry their request), or one that discards
	cache     Cache
	clock     clock.Clock
	rand      func() float64
	dpop      *dpopState // nil without Config.DPoPKey
	obs       *Observer
	// life ends with the pool: background refreshes and kept leases run
	// in it.
	life context.Context
	stop context.CancelFunc

	// The endpoint's last readings, for every token's Stats: the
	// tenant-wide rate limit and the client's (and last organization's)
	// quotas.
	rateLimit atomic.Pointer[RateLimit]
	quotas    atomic.Pointer[Quotas]

	// quotaBlock is an exhausted client quota: no token of the pool sends
	// a request until it resets. orgBlocks are exhausted organization
	// quotas, by organization: they stop that organization's tokens only.
	quotaBlock atomic.Pointer[QuotaError]
	orgMu      sync.Mutex
	orgBlocks  map[string]*QuotaError

	// hold stops every token's requests while the endpoint's rate limit
	// is used up (ratehold.go).
	hold rateHold

	// err is a permanent error about the client itself (a wrong secret,
	// a grant type not enabled, an endpoint that is not one), returned to
	// every token while it holds (failures.go).
	err heldError

	// extras interns the extra fields of token answers: the tokens of one
	// client usually carry the same.
	extras extras
	// scrubbers keeps the scrubber of the client's credential.
	scrubbers scrubberCache

	// apiOnce makes apiBase, the tuned transport under every token's
	// Client(), so that they share one connection pool to the APIs.
	apiOnce sync.Once
	apiBase http.RoundTripper
}

// newClient validates cfg and returns the client it describes.
func newClient(cfg Config, clk clock.Clock) (*client, error) {
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
	c := &client{cfg: cfg, tokenURL: tokenURL, cache: cfg.Cache, clock: clk, rand: rand.Float64, log: cfg.Logger, roots: roots}
	c.life, c.stop = context.WithCancel(context.Background())
	c.dpop = newDPoP(&c.cfg, tokenURL)
	if c.cred, err = newCredential(&c.cfg, clk); err != nil {
		return nil, withNames(err, cfg.FieldNames)
	}
	if c.cache != nil {
		// Derived once here, not per token: a pool of many tokens pays
		// for the slow hash once, and again only when the credential
		// changes.
		if v := c.cred.last(); v != nil {
			v.cacheID(tokenURL, cfg.ClientID)
		}
	} else {
		// Each token keeps itself: nothing to share, nothing to store.
		c.cache = noCache{}
	}
	if c.cfg.LeaseTTL == 0 {
		c.cfg.LeaseTTL = defaultLeaseTTL
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Observer != nil {
		o := *cfg.Observer
		c.obs = &o
	}
	c.log = c.log.With(slog.String("component", "m2mtoken"), slog.String("token_url", tokenURL), slog.String("client_id", cfg.ClientID))
	if c.cert, err = newClientCert(&c.cfg, clk, c.log); err != nil {
		return nil, withNames(err, cfg.FieldNames)
	}
	if c.cert != nil {
		c.cert.changed = c.certChanged
		c.cert.expiring = c.certExpiring
		c.watchCert()
	}
	base := cfg.HTTPClient
	if base == nil {
		// A transport of its own, so that Close can drop its connections
		// without touching the process's http.DefaultTransport, with a cap
		// on connections: one pool of connections for every token.
		base = &http.Client{Transport: ownTransport(roots, c.cfg.MaxConnsPerHost, nil)}
		if c.cert != nil {
			base.Transport = &tokenTransport{cc: c.cert, make: func(present clientCertFunc) *http.Transport {
				return ownTransport(roots, c.cfg.MaxConnsPerHost, present).(*http.Transport)
			}}
		}
		c.ownsHTTP = true
		// As many requests in flight as connections: the others wait for
		// a place where a 429 can still stop them (ratehold.go).
		c.hold.slots = make(chan struct{}, c.cfg.MaxConnsPerHost)
	}
	hc := *base
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.http = &hc
	return c, nil
}

// apiTransport is the transport under every token's Client(): with a
// client certificate, one that is made anew when the certificate changes.
func (c *client) apiTransport() http.RoundTripper {
	c.apiOnce.Do(func() {
		if c.cert == nil {
			c.apiBase = tunedTransport(c.roots, nil)
			return
		}
		t := newCertTransport(func() *http.Transport {
			return tunedTransport(c.roots, c.cert.forHandshake).(*http.Transport)
		})
		c.apiCert.Store(t)
		c.apiBase = t
	})
	return c.apiBase
}

// closeIdle drops the idle connections the client owns, and stops looking
// at its certificate.
func (c *client) closeIdle() {
	if c.cert != nil {
		c.stopCert()
	}
	if c.ownsHTTP {
		c.http.CloseIdleConnections()
	}
	c.apiOnce.Do(func() {}) // no Client() made one after this
	if t := c.apiCert.Load(); t != nil {
		t.closeAllIdle() // its clones' too
	} else if t, ok := c.apiBase.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
}

// reservedParam reports whether a request parameter is one that the client
// or a request's own field sets, and names that field: "Audience",
// "Scopes" or "Organization", or "" for what the client sends itself
// (grant_type, client_id, client_secret, client_assertion and any other
// client_assertion* name). It is the one list that both
// Config.EndpointParams and TokenRequest.Params are checked against.
func reservedParam(name string) (field string, reserved bool) {
	switch name {
	case "audience":
		return "Audience", true
	case "scope":
		return "Scopes", true
	case "organization":
		return "Organization", true
	case "grant_type", "client_id", "client_secret":
		return "", true
	}
	return "", strings.HasPrefix(name, "client_assertion")
}

// paramsError refuses params that set a reserved parameter, naming the
// first in sorted order, with the one message for Config.EndpointParams
// and TokenRequest.Params: {EndpointParams} and the request's fields are
// named by the caller (withNames).
func paramsError(params url.Values) *ConfigError {
	for _, k := range slices.Sorted(maps.Keys(params)) {
		field, reserved := reservedParam(k)
		switch {
		case !reserved:
		case field == "":
			return configErr("{EndpointParams} may not set %q: the client sends it itself "+
				"(grant_type, client_id, client_secret and client_assertion* are its own)", k)
		default:
			return configErr("{EndpointParams} may not set %q: set it with {"+field+"}", k)
		}
	}
	return nil
}
