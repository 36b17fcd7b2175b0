// Package m2mtoken gives services, jobs and tests an OAuth 2.0
// client-credentials access token that, from the caller's side, never
// expires.
//
// A [TokenSource] fetches a token from Auth0 (or any OAuth 2.0 token
// endpoint), caches it, hands it out with one atomic load, and refreshes it
// in the background before it expires, so that no caller waits on a refresh
// while a usable token exists. Concurrent callers with no usable token share
// one token request. Failed requests are retried with backoff, honouring
// Retry-After and Auth0's rate-limit headers; a failed refresh keeps serving
// the old token while it lasts. [TokenSource.Client] returns an
// [http.Client] that adds the token to every request and recovers from a
// revoked token.
//
// Auth0 bills and rate-limits machine-to-machine tokens: a source that is
// idle makes no token requests, and [Config.Cache] lets tokens outlive a
// process ([NewFileCache]) or be shared by a fleet (the rediscache module).
package m2mtoken

import (
	"bytes"
	"context"
	"crypto"
	cryptorand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"

	"github.com/m2mtoken/m2mtoken/internal/clock"
	"github.com/m2mtoken/m2mtoken/internal/jwt"
	"github.com/m2mtoken/m2mtoken/internal/wire"
)

// AuthMethod is how the client authenticates to the token endpoint.
type AuthMethod int

const (
	// ClientSecretPost sends the client ID and secret in the request body.
	// It is Auth0's default and the zero value.
	ClientSecretPost AuthMethod = iota
	// ClientSecretBasic sends them in an HTTP Basic Authorization header
	// (RFC 6749 section 2.3.1); the body then holds nothing secret.
	ClientSecretBasic
	// PrivateKeyJWT authenticates with a short-lived JWT signed with
	// Config.PrivateKey (RFC 7523, OIDC private_key_jwt): no secret is
	// shared with the server. A new assertion is signed for every request.
	PrivateKeyJWT
)

// String returns the method's OAuth 2.0 name.
func (m AuthMethod) String() string {
	switch m {
	case ClientSecretPost:
		return "client_secret_post"
	case ClientSecretBasic:
		return "client_secret_basic"
	case PrivateKeyJWT:
		return "private_key_jwt"
	}
	return fmt.Sprintf("AuthMethod(%d)", int(m))
}

// Config says where and how to get a token. Only an endpoint (Domain or
// TokenURL), ClientID and ClientSecret are required; every other field has
// a default that suits Auth0.
//
// Config holds a secret: its String, GoString, Format and LogValue methods
// redact it.
type Config struct {
	// Domain is an Auth0 tenant or custom domain, such as
	// "tenant.eu.auth0.com" or "https://login.example.com/"; the token URL
	// is then https://DOMAIN/oauth/token. Set Domain or TokenURL, not both.
	Domain string
	// TokenURL is the token endpoint of any OAuth 2.0 server. It must be
	// https, or http to a loopback address.
	TokenURL string

	// ClientID and ClientSecret are the application's credentials. With
	// PrivateKeyJWT there is no secret.
	ClientID     string
	ClientSecret string
	// AuthMethod says how the client authenticates; see [AuthMethod]. When
	// PrivateKey is set and AuthMethod is left zero, it is PrivateKeyJWT.
	AuthMethod AuthMethod

	// PrivateKey signs client assertions for PrivateKeyJWT: an RSA key of
	// at least 2048 bits or an ECDSA P-256 key (see [LoadPrivateKey]).
	PrivateKey crypto.Signer
	// KeyID is the assertion's kid header: the key's ID as registered with
	// the server (Auth0 shows it as the credential's Key ID).
	KeyID string
	// SigningAlgorithm is RS256 (the default for RSA keys), PS256 (RSA) or
	// ES256 (the default, and only choice, for P-256 keys).
	SigningAlgorithm string
	// AssertionAudience is the assertion's aud claim. Empty means
	// https://DOMAIN/ (with the slash, as Auth0 requires) when Domain is
	// set, else TokenURL.
	AssertionAudience string
	// AssertionLifetime is how long each assertion is valid: 1 minute if
	// zero, at most 5 minutes.
	AssertionLifetime time.Duration
	// MTLSTokenURL, if set, is where token requests are sent instead: the
	// token endpoint's mTLS alias (Auth0 serves mTLS client authentication
	// only at its own alias behind a custom domain). HTTPClient must then
	// present the client certificate. Domain or TokenURL still names the
	// server, and the assertion audience.
	MTLSTokenURL string

	// Audience is the identifier of the API the token is for. Auth0 needs it.
	Audience string
	// Scopes, if any, are sent space-separated as "scope". Auth0 grants an
	// M2M token every scope the client was granted and ignores this.
	Scopes []string
	// Organization, if set, is sent as "organization" (Auth0 then puts
	// org_id in the token).
	Organization string
	// EndpointParams are added to the request body, for example RFC 8707's
	// "resource". They may not repeat a parameter that has its own field.
	EndpointParams url.Values
	// JSONBody sends the request as application/json instead of the
	// default application/x-www-form-urlencoded. Auth0 accepts both.
	JSONBody bool

	// HTTPClient sends token requests; nil means a client over
	// [http.DefaultTransport]. Its CheckRedirect is replaced: token requests
	// never follow redirects, so the secret goes nowhere but TokenURL. Its
	// Timeout, if any, bounds each attempt.
	HTTPClient *http.Client
	// Logger receives warnings about failed fetches and, at debug level, a
	// line for every fetch, retry and cache decision. Nil discards them.
	// Nothing secret is logged: tokens appear only as a fingerprint.
	Logger *slog.Logger
	// Cache stores tokens beyond this source; nil keeps them in memory for
	// this source only. See [Cache], [NewMemoryCache], [NewFileCache].
	Cache Cache

	// RefreshWindow is how long before expiry a token becomes stale: it is
	// still handed out, and the first call that sees it stale starts one
	// background refresh. Zero means the smaller of 5 minutes and a fifth
	// of the token's lifetime. It is capped at half the lifetime.
	RefreshWindow time.Duration
	// RefreshJitter widens the refresh window of each token by a random
	// fraction of it, up to this much (0 means 0.2; negative means none),
	// so that a fleet sharing a token does not refresh in lockstep.
	RefreshJitter float64
	// ExpirySkew is how long before expiry a token stops being handed out
	// at all, to allow for clock skew and the time the token spends in
	// flight. Zero means the smaller of 10 seconds and a twentieth of the
	// lifetime. It is capped at a quarter of the lifetime. A caller that
	// finds no token outside the skew waits for a fetch.
	ExpirySkew time.Duration
	// DefaultLifetime is the lifetime of a token that came without
	// expires_in and is not a JWT with an exp claim. Zero means 1 hour.
	DefaultLifetime time.Duration

	// FetchTimeout bounds one fetch, retries included. A fetch runs on its
	// own, detached from the caller that started it: a caller whose context
	// ends stops waiting, but the fetch goes on for the others. Zero means
	// 1 minute.
	FetchTimeout time.Duration
	// AttemptTimeout bounds each HTTP request of a fetch. Zero means 15 s.
	AttemptTimeout time.Duration
	// MaxAttempts bounds the requests of one fetch, within FetchTimeout.
	// Network errors, 408, 429, 5xx and malformed 2xx answers are retried;
	// other errors are not. Zero means 8: with the default backoff a fetch
	// then keeps trying for about 30 seconds before its waiters get the
	// error.
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the exponential backoff between
	// attempts (with full jitter) and between failed background refreshes.
	// A longer Retry-After or X-RateLimit-Reset is honoured, within
	// FetchTimeout. Zero means 250 ms and 30 s.
	MinBackoff, MaxBackoff time.Duration
	// ErrorCacheTTL is how long a permanent error (400, 401, 403: a wrong
	// secret, audience or grant) is returned to callers without asking the
	// endpoint again, so that a misconfigured service cannot hammer it.
	// Zero means 5 seconds.
	ErrorCacheTTL time.Duration
	// MinInvalidateInterval is the least time between two invalidations
	// that take effect (see [TokenSource.Invalidate]), so that an API that
	// rejects every token cannot make the source fetch one per request.
	// Zero means 30 seconds; negative means no limit.
	MinInvalidateInterval time.Duration
	// LeaseTTL is how long a shared fetch lease lasts when Cache is a
	// [Leaser]; a holder that dies blocks others for at most this long.
	// Zero means 15 seconds.
	LeaseTTL time.Duration
}

// String describes the configuration with the secret redacted.
func (c Config) String() string {
	endpoint := c.TokenURL
	if c.Domain != "" {
		endpoint = c.Domain
	}
	secret := "<empty>"
	if c.ClientSecret != "" {
		secret = "<redacted>"
	}
	key := "<none>"
	if c.PrivateKey != nil {
		key = "<redacted>"
	}
	return fmt.Sprintf("m2mtoken.Config{endpoint:%q client_id:%q client_secret:%s private_key:%s audience:%q scopes:%q organization:%q auth:%s}",
		endpoint, c.ClientID, secret, key, c.Audience, c.Scopes, c.Organization, c.AuthMethod)
}

// GoString is String, so that %#v redacts too.
func (c Config) GoString() string { return c.String() }

// Format makes every fmt verb print String.
func (c Config) Format(f fmt.State, _ rune) { io.WriteString(f, c.String()) }

// LogValue logs the configuration with the secret redacted.
func (c Config) LogValue() slog.Value {
	endpoint := c.TokenURL
	if c.Domain != "" {
		endpoint = c.Domain
	}
	return slog.GroupValue(
		slog.String("endpoint", endpoint),
		slog.String("client_id", c.ClientID),
		slog.Bool("client_secret_set", c.ClientSecret != ""),
		slog.String("audience", c.Audience),
		slog.String("auth", c.AuthMethod.String()),
	)
}

// reservedParams are request parameters that Config sets itself.
var reservedParams = []string{"grant_type", "client_id", "client_secret", "audience", "scope", "organization", "client_assertion", "client_assertion_type"}

// withDefaults validates c and fills in defaults. It returns the token URL.
func (c *Config) withDefaults() (string, error) {
	if c.ClientID == "" {
		return "", errors.New("m2mtoken: Config.ClientID is empty: set it to the application's Client ID")
	}
	if c.PrivateKey != nil && c.AuthMethod == ClientSecretPost && c.ClientSecret == "" {
		c.AuthMethod = PrivateKeyJWT
	}
	switch c.AuthMethod {
	case ClientSecretPost, ClientSecretBasic:
		if c.PrivateKey != nil {
			return "", errors.New("m2mtoken: Config.PrivateKey and Config.ClientSecret are both set: use one way to authenticate (a key means AuthMethod PrivateKeyJWT)")
		}
		if c.ClientSecret == "" {
			return "", errors.New("m2mtoken: Config.ClientSecret is empty: set it to the application's Client Secret (or set PrivateKey for Private Key JWT)")
		}
	case PrivateKeyJWT:
		if c.ClientSecret != "" {
			return "", errors.New("m2mtoken: Config.ClientSecret is set with AuthMethod PrivateKeyJWT: a secret and a key together are refused; remove the secret")
		}
		if c.PrivateKey == nil {
			return "", errors.New("m2mtoken: AuthMethod PrivateKeyJWT needs Config.PrivateKey (see LoadPrivateKey)")
		}
		alg, err := jwt.CheckKey(c.PrivateKey, c.SigningAlgorithm)
		if err != nil {
			return "", fmt.Errorf("m2mtoken: Config.PrivateKey: %w", err)
		}
		c.SigningAlgorithm = alg
		if c.AssertionLifetime < 0 || c.AssertionLifetime > 5*time.Minute {
			return "", fmt.Errorf("m2mtoken: Config.AssertionLifetime %v: must be at most 5 minutes", c.AssertionLifetime)
		}
		setDefault(&c.AssertionLifetime, time.Minute)
	default:
		return "", fmt.Errorf("m2mtoken: Config.AuthMethod %v is not supported", c.AuthMethod)
	}
	tokenURL, err := endpointURL(c.Domain, c.TokenURL)
	if err != nil {
		return "", err
	}
	if c.AssertionAudience == "" {
		c.AssertionAudience = tokenURL
		if c.Domain != "" {
			c.AssertionAudience = strings.TrimSuffix(tokenURL, "oauth/token")
		}
	}
	if c.MTLSTokenURL != "" {
		if tokenURL, err = endpointURL("", c.MTLSTokenURL); err != nil {
			return "", fmt.Errorf("%w (in Config.MTLSTokenURL)", err)
		}
	}
	for _, p := range reservedParams {
		if _, ok := c.EndpointParams[p]; ok {
			return "", fmt.Errorf("m2mtoken: Config.EndpointParams may not set %q: use the Config field for it", p)
		}
	}
	for name, d := range map[string]time.Duration{
		"RefreshWindow": c.RefreshWindow, "ExpirySkew": c.ExpirySkew, "DefaultLifetime": c.DefaultLifetime,
		"FetchTimeout": c.FetchTimeout, "AttemptTimeout": c.AttemptTimeout, "MinBackoff": c.MinBackoff,
		"MaxBackoff": c.MaxBackoff, "ErrorCacheTTL": c.ErrorCacheTTL, "LeaseTTL": c.LeaseTTL,
	} {
		if d < 0 {
			return "", fmt.Errorf("m2mtoken: Config.%s is negative (%v): use 0 for the default", name, d)
		}
	}
	if c.MaxAttempts < 0 {
		return "", fmt.Errorf("m2mtoken: Config.MaxAttempts is negative (%d): use 0 for the default", c.MaxAttempts)
	}
	if c.RefreshJitter > 1 {
		return "", fmt.Errorf("m2mtoken: Config.RefreshJitter %v is more than 1", c.RefreshJitter)
	}
	setDefault(&c.RefreshJitter, 0.2)
	setDefault(&c.DefaultLifetime, time.Hour)
	setDefault(&c.FetchTimeout, time.Minute)
	setDefault(&c.AttemptTimeout, 15*time.Second)
	setDefault(&c.MaxAttempts, 8)
	setDefault(&c.MinBackoff, 250*time.Millisecond)
	setDefault(&c.MaxBackoff, 30*time.Second)
	setDefault(&c.ErrorCacheTTL, 5*time.Second)
	setDefault(&c.MinInvalidateInterval, 30*time.Second)
	setDefault(&c.LeaseTTL, 15*time.Second)
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = c.MinBackoff
	}
	return tokenURL, nil
}

func setDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

// endpointURL turns Domain or TokenURL into the token URL, and refuses
// what would send the secret somewhere unsafe.
func endpointURL(domain, tokenURL string) (string, error) {
	domain, tokenURL = strings.TrimSpace(domain), strings.TrimSpace(tokenURL)
	switch {
	case domain == "" && tokenURL == "":
		return "", errors.New("m2mtoken: no endpoint: set Config.Domain (for example \"tenant.eu.auth0.com\") or Config.TokenURL")
	case domain != "" && tokenURL != "":
		return "", errors.New("m2mtoken: both Config.Domain and Config.TokenURL are set: set only one")
	}
	field, raw := "TokenURL", tokenURL
	if domain != "" {
		field, raw = "Domain", domain
		if !strings.Contains(raw, "://") {
			raw = "https://" + raw
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("m2mtoken: Config.%s %q does not parse as a URL", field, raw)
	}
	if u.Host == "" || u.Hostname() == "" {
		return "", fmt.Errorf("m2mtoken: Config.%s %q has no host", field, raw)
	}
	if u.User != nil {
		return "", fmt.Errorf("m2mtoken: Config.%s has credentials in it: put them in ClientID and ClientSecret", field)
	}
	if u.Fragment != "" {
		return "", fmt.Errorf("m2mtoken: Config.%s %q has a #fragment", field, raw)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return "", fmt.Errorf("m2mtoken: Config.%s %q uses plain http: the secret would travel unencrypted; use https (http is allowed only to loopback addresses)", field, raw)
		}
	default:
		return "", fmt.Errorf("m2mtoken: Config.%s %q: scheme must be https", field, raw)
	}
	if field == "Domain" {
		if (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return "", fmt.Errorf("m2mtoken: Config.Domain %q has a path or query: give the bare domain, or the full URL in Config.TokenURL", domain)
		}
		u.Path, u.RawPath = "/oauth/token", ""
	}
	return u.String(), nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

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

	requests, failures, cacheHits, joins, flights, refreshes atomic.Uint64
	rateLimit                                                atomic.Pointer[RateLimit]
	lastErr                                                  atomic.Pointer[TokenError] // the last failed attempt, for WaitError

	clientOnce sync.Once
	httpClient *http.Client
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
		return nil, err
	}
	s := &TokenSource{
		cfg:      cfg,
		tokenURL: tokenURL,
		key:      cacheKey(tokenURL, cfg.ClientID, cfg.Audience, cfg.Scopes, cfg.Organization, cfg.EndpointParams, cfg.AuthMethod),
		cache:    cfg.Cache,
		clock:    clk,
		rand:     rand.Float64,
		log:      cfg.Logger,
	}
	if s.cache == nil {
		s.cache = NewMemoryCache()
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With(slog.String("component", "m2mtoken"), slog.String("token_url", tokenURL), slog.String("client_id", cfg.ClientID))
	base := cfg.HTTPClient
	if base == nil {
		base = &http.Client{Transport: http.DefaultTransport}
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
// organization, parameters and method, and reveals none of them.
func (s *TokenSource) CacheKey() string { return s.key }

// String describes the source without any secret.
func (s *TokenSource) String() string {
	return fmt.Sprintf("m2mtoken.TokenSource{token_url:%q client_id:%q audience:%q}", s.tokenURL, s.cfg.ClientID, s.cfg.Audience)
}

// Format makes every fmt verb print String, so that no verb reaches the
// secret inside.
func (s *TokenSource) Format(f fmt.State, _ rune) { io.WriteString(f, s.String()) }

// RateLimit is what the token endpoint's last rate-limit and quota headers
// said.
type RateLimit struct {
	// Limit and Remaining are X-RateLimit-Limit and X-RateLimit-Remaining.
	Limit, Remaining int64
	// Reset is X-RateLimit-Reset in the local clock (corrected with the
	// answer's Date header).
	Reset time.Time
	// ClientQuota and OrganizationQuota are Auth0's
	// Auth0-Client-Quota-Limit and Auth0-Organization-Quota-Limit headers.
	ClientQuota, OrganizationQuota string
	// At is when the answer carrying them arrived.
	At time.Time
}

// Stats is a snapshot of a source's counters.
type Stats struct {
	// TokenRequests counts HTTP requests sent to the token endpoint,
	// retries included; Failures counts those that did not yield a token.
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
	// Expiry is the current token's expiry; zero if there is no usable token.
	Expiry time.Time
	// RateLimit is from the last answer that had rate-limit headers; nil if
	// none had.
	RateLimit *RateLimit
}

// Stats returns a snapshot of the source's counters.
func (s *TokenSource) Stats() Stats {
	st := Stats{
		TokenRequests:       s.requests.Load(),
		Failures:            s.failures.Load(),
		CacheHits:           s.cacheHits.Load(),
		BackgroundRefreshes: s.refreshes.Load(),
		RateLimit:           s.rateLimit.Load(),
	}
	if j, f := s.joins.Load(), s.flights.Load(); j > f {
		st.Collapsed = j - f
	}
	if e := s.cur.Load(); e != nil {
		st.Expiry = e.src.Expiry
	}
	return st
}

// TokenError is a failed token request. For an answer from the endpoint it
// wraps an [*oauth2.RetrieveError] (find it with [errors.As]); for a
// network failure, the network error. Its message gives the status and the
// endpoint's error code and description, never the secret or a token.
type TokenError struct {
	// URL is the token endpoint.
	URL string
	// StatusCode is the HTTP status, or 0 if no answer came.
	StatusCode int
	// Code and Description are the answer's "error" and
	// "error_description", if it had them.
	Code, Description string
	// Temporary reports whether a retry may succeed (network errors, 408,
	// 429, 5xx, a malformed 2xx answer).
	Temporary bool
	// RetryAfter is the delay the endpoint asked for, if it asked.
	RetryAfter time.Duration

	err error
}

func (e *TokenError) Error() string {
	var b strings.Builder
	b.WriteString("m2mtoken: token request to ")
	b.WriteString(e.URL)
	b.WriteString(" failed: ")
	switch {
	case e.StatusCode == 0:
		b.WriteString(e.err.Error())
	default:
		fmt.Fprintf(&b, "%d %s", e.StatusCode, http.StatusText(e.StatusCode))
		if e.Code != "" {
			fmt.Fprintf(&b, ": %s", e.Code)
		}
		var re *oauth2.RetrieveError
		switch {
		case e.Description != "":
			fmt.Fprintf(&b, ": %s", e.Description)
		case e.err != nil && !errors.As(e.err, &re):
			fmt.Fprintf(&b, ": %v", e.err)
		}
	}
	return b.String()
}

// Unwrap returns the underlying *oauth2.RetrieveError or network error.
func (e *TokenError) Unwrap() error { return e.err }

// WaitError is returned to a caller whose context ended while it waited
// for a token: it says what the token endpoint last answered, if anything
// went wrong. errors.Is finds the context's error; errors.As finds the
// endpoint's *TokenError.
type WaitError struct {
	Ctx  error // context.Canceled or context.DeadlineExceeded
	Last error // the last failed attempt's *TokenError, or nil
}

func (e *WaitError) Error() string {
	if e.Last == nil {
		return "m2mtoken: no token yet: " + e.Ctx.Error()
	}
	return "m2mtoken: no token yet: " + e.Ctx.Error() + "; last attempt: " + e.Last.Error()
}

// Unwrap returns the context's error and the last attempt's.
func (e *WaitError) Unwrap() []error {
	if e.Last == nil {
		return []error{e.Ctx}
	}
	return []error{e.Ctx, e.Last}
}

// ErrClosed is returned by a source after [TokenSource.Close] when it has
// no usable token left.
var ErrClosed = errors.New("m2mtoken: token source is closed")

// attempt sends one token request. It returns the token, or a *TokenError.
func (s *TokenSource) attempt(ctx context.Context) (*Entry, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.AttemptTimeout)
	defer cancel()
	req, err := s.newRequest(ctx)
	if err != nil {
		return nil, &TokenError{URL: s.tokenURL, err: err}
	}
	start := s.clock.Now()
	s.requests.Add(1)
	resp, err := s.client.Do(req)
	if err != nil {
		s.failures.Add(1)
		te := &TokenError{URL: s.tokenURL, Temporary: true, err: stripURL(err)}
		s.lastErr.Store(te)
		return nil, te
	}
	body, readErr := io.ReadAll(io.LimitReader(resp.Body, wire.MaxBody+1))
	resp.Body.Close()
	now := s.clock.Now()
	if rl, ok := wire.ParseRateLimit(resp.Header, now); ok {
		r := RateLimit(rl)
		r.At = now
		s.rateLimit.Store(&r)
	}
	ent, terr := s.readAnswer(resp, body, readErr, start, now)
	if terr != nil {
		s.failures.Add(1)
		s.lastErr.Store(terr)
		return nil, terr
	}
	s.lastErr.Store(nil)
	return ent, nil
}

// stripURL removes the *url.Error wrapping that repeats method and URL.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func (s *TokenSource) newRequest(ctx context.Context) (*http.Request, error) {
	form := url.Values{"grant_type": {"client_credentials"}}
	switch s.cfg.AuthMethod {
	case ClientSecretPost:
		form.Set("client_id", s.cfg.ClientID)
		form.Set("client_secret", s.cfg.ClientSecret)
	case PrivateKeyJWT:
		assertion, err := s.assertion()
		if err != nil {
			return nil, err
		}
		form.Set("client_id", s.cfg.ClientID)
		form.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
		form.Set("client_assertion", assertion)
	}
	if s.cfg.Audience != "" {
		form.Set("audience", s.cfg.Audience)
	}
	if len(s.cfg.Scopes) > 0 {
		form.Set("scope", strings.Join(s.cfg.Scopes, " "))
	}
	if s.cfg.Organization != "" {
		form.Set("organization", s.cfg.Organization)
	}
	for k, vs := range s.cfg.EndpointParams {
		form[k] = append([]string(nil), vs...)
	}
	var body []byte
	contentType := "application/x-www-form-urlencoded"
	if s.cfg.JSONBody {
		m := make(map[string]any, len(form))
		for k, vs := range form {
			if len(vs) == 1 {
				m[k] = vs[0]
			} else {
				m[k] = vs
			}
		}
		var err error
		if body, err = json.Marshal(m); err != nil {
			return nil, err
		}
		contentType = "application/json"
	} else {
		body = []byte(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.tokenURL, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "m2mtoken-go")
	if s.cfg.AuthMethod == ClientSecretBasic {
		// RFC 6749 section 2.3.1: form-encode both before Basic encoding.
		req.SetBasicAuth(url.QueryEscape(s.cfg.ClientID), url.QueryEscape(s.cfg.ClientSecret))
	}
	return req, nil
}

// assertion signs a new client assertion (RFC 7523 section 3) with a
// unique jti.
func (s *TokenSource) assertion() (string, error) {
	var jti [16]byte
	if _, err := cryptorand.Read(jti[:]); err != nil {
		return "", err
	}
	now := s.clock.Now()
	return jwt.Sign(s.cfg.PrivateKey, s.cfg.SigningAlgorithm, s.cfg.KeyID, map[string]any{
		"iss": s.cfg.ClientID,
		"sub": s.cfg.ClientID,
		"aud": s.cfg.AssertionAudience,
		"iat": now.Unix(),
		"exp": now.Add(s.cfg.AssertionLifetime).Unix(),
		"jti": hex.EncodeToString(jti[:]),
	})
}

// readAnswer turns one answer into a token or a *TokenError.
func (s *TokenSource) readAnswer(resp *http.Response, body []byte, readErr error, start, now time.Time) (*Entry, *TokenError) {
	te := &TokenError{URL: s.tokenURL, StatusCode: resp.StatusCode}
	ct := resp.Header.Get("Content-Type")
	ok2xx := resp.StatusCode >= 200 && resp.StatusCode < 300
	if readErr != nil || len(body) > wire.MaxBody {
		te.Temporary = true
		te.err = &wire.MalformedError{Reason: "body truncated or over 1 MiB"}
		if readErr != nil {
			te.err = &wire.MalformedError{Reason: "body cut short: " + readErr.Error()}
		}
		if !ok2xx {
			te.Temporary = isTemporaryStatus(resp.StatusCode)
		}
		return nil, te
	}
	if ok2xx {
		r, eb, err := wire.ParseToken(ct, body)
		switch {
		case eb != nil:
			te.Code, te.Description = eb.Code, truncate(eb.Description, 300)
			te.err = &oauth2.RetrieveError{Response: resp, ErrorCode: eb.Code, ErrorDescription: eb.Description, ErrorURI: eb.URI}
			te.Temporary = eb.Code == "temporarily_unavailable"
			return nil, te
		case err != nil:
			// The body may hold a token: the RetrieveError gets no Body.
			te.Temporary = true
			te.err = &oauth2.RetrieveError{Response: resp, ErrorDescription: err.Error()}
			te.Description = err.Error()
			return nil, te
		}
		ent := &Entry{AccessToken: r.AccessToken, TokenType: r.TokenType, IssuedAt: start, Extra: r.Extra}
		switch {
		case r.ExpiresIn > 0:
			ent.Expiry = start.Add(r.ExpiresIn)
		default:
			if exp, ok := jwt.Expiry(r.AccessToken); ok {
				if !exp.After(now) {
					te.Description = "the token's exp claim is already past (is the clock right?)"
					te.err = &oauth2.RetrieveError{Response: resp, ErrorDescription: te.Description}
					return nil, te
				}
				ent.Expiry = exp
			} else {
				ent.Expiry = start.Add(s.cfg.DefaultLifetime)
			}
		}
		return ent, nil
	}
	te.Temporary = isTemporaryStatus(resp.StatusCode)
	re := &oauth2.RetrieveError{Response: resp, Body: body}
	if eb := wire.ParseError(ct, body); eb != nil {
		re.ErrorCode, re.ErrorDescription, re.ErrorURI = eb.Code, eb.Description, eb.URI
		te.Code, te.Description = eb.Code, truncate(eb.Description, 300)
	}
	te.err = re
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		te.Description = "redirect to " + truncate(resp.Header.Get("Location"), 200) + " not followed: token requests go only to the configured URL"
	}
	if d, ok := wire.RetryAfter(resp.Header.Get("Retry-After"), now); ok {
		te.RetryAfter = d
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		if rl, ok := wire.ParseRateLimit(resp.Header, now); ok && !rl.Reset.IsZero() {
			// Waiting until exactly the reset second races the refill: add one.
			if d := rl.Reset.Sub(now) + time.Second; d > te.RetryAfter {
				te.RetryAfter = min(d, time.Hour)
			}
		}
	}
	return nil, te
}

func isTemporaryStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
