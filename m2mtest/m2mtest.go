// Package m2mtest is an in-process OAuth 2.0 token issuer that behaves like
// an Auth0 tenant's client-credentials endpoint, for testing services that
// get tokens and APIs that check them, without a real tenant.
//
// A [Server] issues RS256 JWT access tokens with Auth0's claims (iss, sub =
// CLIENT_ID@clients, aud, azp, scope, iat, exp, jti, gty), publishes its key
// at /.well-known/jwks.json and its metadata at
// /.well-known/openid-configuration, and answers bad requests the way Auth0
// does. It can inject faults (latency, error statuses, 429 with rate-limit
// headers, malformed or truncated bodies, dropped connections) and rate
// limit like Auth0, for resilience tests.
//
// It uses only the standard library.
package m2mtest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/m2mtoken/m2mtoken/internal/jwt"
)

// Client is an application registered with the issuer.
type Client struct {
	// ID and Secret are the client's credentials.
	ID, Secret string
	// Audiences are the APIs the client has a grant for. An audience that
	// no client lists is unknown to the tenant.
	Audiences []string
	// Scopes are the scopes granted to the client; every token carries all
	// of them, as on Auth0.
	Scopes []string
	// Organizations, if any, are the organizations the client may ask a
	// token for.
	Organizations []string
	// NoClientCredentials denies the client_credentials grant (Auth0
	// answers 403 unauthorized_client).
	NoClientCredentials bool
	// PublicKey, if set, lets the client authenticate with private_key_jwt:
	// an *rsa.PublicKey (RS256, PS256) or a P-256 *ecdsa.PublicKey (ES256).
	// A client may have a Secret, a PublicKey or both.
	PublicKey crypto.PublicKey
}

// Fault is one injected answer to a token request.
type Fault struct {
	// Status, if not 0, answers with this status and an Auth0-style error
	// body. 429 also carries Retry-After (if RetryAfter is set) and
	// X-RateLimit-Limit/Remaining/Reset.
	Status     int
	RetryAfter time.Duration
	// Malformed answers 200 with an HTML page.
	Malformed bool
	// Truncated answers 200 with half of a token response.
	Truncated bool
	// Drop closes the connection without answering.
	Drop bool
	// Latency delays this answer (on top of the server's latency).
	Latency time.Duration
}

// DefaultLifetime is the lifetime of issued tokens unless
// [Server.SetTokenLifetime] says otherwise; it is Auth0's default.
const DefaultLifetime = 24 * time.Hour

const (
	maxRequestBody   = 64 << 10
	errorURIGrantDoc = "https://auth0.com/docs/clients/client-grant-types"
)

// Server is a running issuer. Create it with [NewServer], [NewTLSServer] or
// [Listen]; stop it with Close.
type Server struct {
	// URL is the base URL, such as http://127.0.0.1:50123, with no slash.
	URL string

	srv *httptest.Server
	key *rsa.PrivateKey
	kid string

	mu        sync.Mutex
	clients   map[string]Client
	lifetime  time.Duration
	latency   time.Duration
	queue     []Fault
	faultRate float64
	faultPool []Fault
	bucket    *bucket
	requests  int
	perClient map[string]int
	issued    map[string]int
	now       func() time.Time
	audiences map[string]bool
	seenJTI   map[string]time.Time // assertion IDs until their expiry
}

// NewServer starts an issuer over http on a loopback port with the given
// clients.
func NewServer(clients ...Client) *Server {
	s := newServer(clients)
	s.start(httptest.NewUnstartedServer(s), false)
	return s
}

// NewTLSServer starts an issuer over https on a loopback port, with a
// certificate that [Server.Client] trusts.
func NewTLSServer(clients ...Client) *Server {
	s := newServer(clients)
	s.start(httptest.NewUnstartedServer(s), true)
	return s
}

// Listen starts an issuer over http on addr, such as "127.0.0.1:0".
func Listen(addr string, clients ...Client) (*Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := newServer(clients)
	srv := httptest.NewUnstartedServer(s)
	srv.Listener.Close()
	srv.Listener = l
	s.start(srv, false)
	return s, nil
}

// start sets URL before the server serves its first request, so that
// handlers can read it without a lock.
func (s *Server) start(srv *httptest.Server, tls bool) {
	s.srv = srv
	scheme := "http://"
	if tls {
		scheme = "https://"
	}
	s.URL = scheme + srv.Listener.Addr().String()
	if tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
}

func newServer(clients []Client) *Server {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic("m2mtest: generating an RSA key: " + err.Error()) // the system's randomness failed
	}
	sum := sha256.Sum256(key.PublicKey.N.Bytes())
	s := &Server{
		key: key, kid: hex.EncodeToString(sum[:8]),
		clients: map[string]Client{}, lifetime: DefaultLifetime,
		perClient: map[string]int{}, issued: map[string]int{}, now: time.Now,
		audiences: map[string]bool{}, seenJTI: map[string]time.Time{},
	}
	for _, c := range clients {
		s.AddClient(c)
	}
	return s
}

// Close shuts the server down.
func (s *Server) Close() { s.srv.Close() }

// Client returns an http.Client that trusts the server's certificate (for
// a TLS server) and connects to it.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// Issuer is the iss claim of the server's tokens: URL with a slash.
func (s *Server) Issuer() string { return s.URL + "/" }

// TokenURL is the token endpoint.
func (s *Server) TokenURL() string { return s.URL + "/oauth/token" }

// JWKSURL is the key set's URL.
func (s *Server) JWKSURL() string { return s.URL + "/.well-known/jwks.json" }

// PublicKey is the key that signs tokens, and KeyID its kid.
func (s *Server) PublicKey() *rsa.PublicKey { return &s.key.PublicKey }

// KeyID is the kid header of the server's tokens.
func (s *Server) KeyID() string { return s.kid }

// AddClient registers c, replacing a client with the same ID.
func (s *Server) AddClient(c Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.Audiences = slices.Clone(c.Audiences)
	c.Scopes = slices.Clone(c.Scopes)
	s.clients[c.ID] = c
	for _, a := range c.Audiences {
		s.audiences[a] = true
	}
}

// AddAPI makes audience known to the tenant without granting it to any
// client (such a request gets 403 "not authorized to access resource
// server").
func (s *Server) AddAPI(audience string) {
	s.mu.Lock()
	s.audiences[audience] = true
	s.mu.Unlock()
}

// SetTokenLifetime sets expires_in of the tokens issued from now on
// (default 24 h). It is rounded down to whole seconds, at least 1.
func (s *Server) SetTokenLifetime(d time.Duration) {
	s.mu.Lock()
	s.lifetime = max(d.Truncate(time.Second), time.Second)
	s.mu.Unlock()
}

// SetLatency delays every answer by d.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	s.latency = d
	s.mu.Unlock()
}

// FailNext makes the next n token requests get fault f (after any faults
// queued before).
func (s *Server) FailNext(n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; i < n; i++ {
		s.queue = append(s.queue, f)
	}
}

// SetRandomFaults makes each token request, with probability rate, get one
// of faults chosen at random. Rate 0 turns it off.
func (s *Server) SetRandomFaults(rate float64, faults ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faultRate, s.faultPool = rate, slices.Clone(faults)
}

// SetRateLimit rate-limits token requests like an Auth0 tenant: a token
// bucket of burst tokens refilled at perSecond. Every answer then carries
// X-RateLimit-Limit/Remaining/Reset; an empty bucket answers 429. burst 0
// turns it off.
func (s *Server) SetRateLimit(burst int, perSecond float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if burst <= 0 {
		s.bucket = nil
		return
	}
	s.bucket = &bucket{burst: float64(burst), rate: perSecond, tokens: float64(burst), last: s.now()}
}

// Requests is the number of requests to the token endpoint, of any outcome.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// ClientRequests is the number of token requests that named clientID.
func (s *Server) ClientRequests(clientID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.perClient[clientID]
}

// TokensIssued is the number of tokens issued to clientID.
func (s *Server) TokensIssued(clientID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issued[clientID]
}

type bucket struct {
	burst, rate, tokens float64
	last                time.Time
}

func (b *bucket) take(now time.Time) (ok bool, remaining int, reset time.Time) {
	b.tokens = math.Min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		ok = true
	}
	missing := b.burst - b.tokens
	if b.rate > 0 {
		reset = now.Add(time.Duration(missing / b.rate * float64(time.Second)))
	} else {
		reset = now.Add(time.Hour)
	}
	return ok, int(b.tokens), reset
}

// ServeHTTP serves the token endpoint, the JWKS and the discovery document.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/oauth/token":
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			writeError(w, http.StatusMethodNotAllowed, "invalid_request", "Method not allowed: use POST", "")
			return
		}
		s.token(w, r)
	case "/.well-known/jwks.json":
		s.jwks(w)
	case "/.well-known/openid-configuration":
		s.discovery(w)
	default:
		http.NotFound(w, r)
	}
}

func (s *Server) jwks(w http.ResponseWriter) {
	pub := s.key.PublicKey
	writeJSON(w, 200, map[string]any{"keys": []map[string]any{{
		"kty": "RSA", "use": "sig", "alg": "RS256", "kid": s.kid,
		"n": b64(pub.N.Bytes()), "e": b64(bigEndian(pub.E)),
	}}})
}

func (s *Server) discovery(w http.ResponseWriter) {
	writeJSON(w, 200, map[string]any{
		"issuer":                                s.Issuer(),
		"token_endpoint":                        s.TokenURL(),
		"jwks_uri":                              s.JWKSURL(),
		"grant_types_supported":                 []string{"client_credentials"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "client_secret_basic", "private_key_jwt"},
		"token_endpoint_auth_signing_alg_values_supported": []string{"RS256", "PS256", "ES256"},
		"id_token_signing_alg_values_supported":            []string{"RS256"},
		"response_types_supported":                         []string{"token"},
		"subject_types_supported":                          []string{"public"},
	})
}

func bigEndian(e int) []byte {
	b := []byte{byte(e >> 24), byte(e >> 16), byte(e >> 8), byte(e)}
	for len(b) > 1 && b[0] == 0 {
		b = b[1:]
	}
	return b
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	fault, faulty := s.nextFault()
	latency := s.latency
	var limited bool
	var rlHeaders func()
	if s.bucket != nil {
		ok, remaining, reset := s.bucket.take(s.now())
		limited = !ok
		burst := int(s.bucket.burst)
		rlHeaders = func() {
			w.Header().Set("X-RateLimit-Limit", strconv.Itoa(burst))
			w.Header().Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
			w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
		}
	}
	s.mu.Unlock()

	if !sleep(r, latency+fault.Latency) {
		return
	}
	if rlHeaders != nil {
		rlHeaders()
	}
	if faulty && s.inject(w, fault) {
		return
	}
	if limited {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "too_many_requests", "Global limit has been reached", "")
		return
	}
	params, basicID, basicSecret, ok := s.readParams(w, r)
	if !ok {
		return
	}
	s.issue(w, params, basicID, basicSecret)
}

// nextFault picks the queued or random fault for this request. s.mu is held.
func (s *Server) nextFault() (Fault, bool) {
	if len(s.queue) > 0 {
		f := s.queue[0]
		s.queue = s.queue[1:]
		return f, true
	}
	if s.faultRate > 0 && len(s.faultPool) > 0 && mrand.Float64() < s.faultRate {
		return s.faultPool[mrand.IntN(len(s.faultPool))], true
	}
	return Fault{}, false
}

func sleep(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

// inject answers with f. It reports false for a latency-only fault.
func (s *Server) inject(w http.ResponseWriter, f Fault) bool {
	switch {
	case f.Drop:
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return true
			}
		}
		panic(http.ErrAbortHandler)
	case f.Malformed:
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<html><body><h1>502 Bad Gateway</h1></body></html>")
	case f.Truncated:
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOi`)
	case f.Status != 0:
		if f.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(f.RetryAfter.Seconds()))))
		}
		if f.Status == http.StatusTooManyRequests {
			now := s.now()
			w.Header().Set("X-RateLimit-Limit", "30")
			w.Header().Set("X-RateLimit-Remaining", "0")
			w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(now.Add(max(f.RetryAfter, time.Second)).Unix(), 10))
			writeError(w, f.Status, "too_many_requests", "Rate limit exceeded.", "")
			return true
		}
		writeError(w, f.Status, "server_error", http.StatusText(f.Status), "")
	default:
		return false
	}
	return true
}

// readParams reads the form or JSON body and the Basic credentials.
func (s *Server) readParams(w http.ResponseWriter, r *http.Request) (url.Values, string, string, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "invalid_request", "Request body too large", "")
		} else {
			writeError(w, http.StatusBadRequest, "invalid_request", "Could not read the request body", "")
		}
		return nil, "", "", false
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var params url.Values
	switch mt {
	case "application/x-www-form-urlencoded":
		if params, err = url.ParseQuery(string(body)); err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request", "Malformed form body", "")
			return nil, "", "", false
		}
	case "application/json":
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request", "Malformed JSON body", "")
			return nil, "", "", false
		}
		params = url.Values{}
		for k, v := range m {
			switch v := v.(type) {
			case string:
				params.Set(k, v)
			case []any:
				for _, x := range v {
					params.Add(k, fmt.Sprint(x))
				}
			default:
				params.Set(k, fmt.Sprint(v))
			}
		}
	default:
		writeError(w, http.StatusBadRequest, "invalid_request", "Content-Type must be application/x-www-form-urlencoded or application/json", "")
		return nil, "", "", false
	}
	id, secret, hasBasic := r.BasicAuth()
	if hasBasic {
		// RFC 6749 section 2.3.1: both parts are form-encoded.
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
		if params.Has("client_secret") {
			writeError(w, http.StatusBadRequest, "invalid_request", "Only one client authentication method may be used", "")
			return nil, "", "", false
		}
	}
	return params, id, secret, true
}

// issue checks the request like Auth0 and answers with a token or an error.
func (s *Server) issue(w http.ResponseWriter, p url.Values, basicID, basicSecret string) {
	gt := p.Get("grant_type")
	if gt == "" {
		writeError(w, http.StatusBadRequest, "invalid_request", "Missing required parameter: grant_type", "")
		return
	}
	id, secret := p.Get("client_id"), p.Get("client_secret")
	assertion := p.Get("client_assertion")
	if assertion != "" || p.Has("client_assertion_type") {
		if p.Get("client_assertion_type") != jwtBearer {
			writeError(w, http.StatusBadRequest, "invalid_request", "client_assertion_type must be "+jwtBearer, "")
			return
		}
		if secret != "" || basicID != "" {
			writeError(w, http.StatusBadRequest, "invalid_request", "Only one client authentication method may be used", "")
			return
		}
		if id == "" {
			// The assertion names its client; its signature is checked below.
			var cl struct{ Iss string }
			jwt.Unverified(assertion, &cl)
			id = cl.Iss
		}
	}
	if basicID != "" {
		if id != "" && id != basicID {
			writeError(w, http.StatusBadRequest, "invalid_request", "client_id does not match the Authorization header", "")
			return
		}
		id, secret = basicID, basicSecret
	}
	if id == "" {
		writeError(w, http.StatusBadRequest, "invalid_request", "Missing required parameter: client_id", "")
		return
	}
	s.mu.Lock()
	s.perClient[id]++
	c, known := s.clients[id]
	lifetime := s.lifetime
	knownAudience := s.audiences[p.Get("audience")]
	s.mu.Unlock()
	if gt != "client_credentials" {
		writeError(w, http.StatusForbidden, "unsupported_grant_type", "Unsupported grant type: "+clip(gt), "")
		return
	}
	if assertion != "" {
		if !known {
			writeError(w, http.StatusUnauthorized, "access_denied", "Unauthorized", "")
			return
		}
		if err := s.checkAssertion(c, assertion); err != nil {
			writeError(w, http.StatusUnauthorized, "invalid_client", "Invalid client assertion: "+err.Error(), "")
			return
		}
	} else if !known || secret == "" || c.Secret == "" || !constantTimeEqual(secret, c.Secret) {
		writeError(w, http.StatusUnauthorized, "access_denied", "Unauthorized", "")
		return
	}
	if c.NoClientCredentials {
		writeError(w, http.StatusForbidden, "unauthorized_client", "Grant type 'client_credentials' not allowed for the client.", errorURIGrantDoc)
		return
	}
	aud := p.Get("audience")
	switch {
	case aud == "":
		writeError(w, http.StatusForbidden, "access_denied", "No audience parameter was provided, and no default audience has been configured", "")
		return
	case !knownAudience:
		writeError(w, http.StatusForbidden, "access_denied", "Service not enabled within domain: "+clip(aud), "")
		return
	case !slices.Contains(c.Audiences, aud):
		writeError(w, http.StatusForbidden, "access_denied", fmt.Sprintf("Client %q is not authorized to access resource server %q.", id, clip(aud)), "")
		return
	}
	if req := strings.Fields(p.Get("scope")); len(req) > 0 {
		var missing []string
		for _, sc := range req {
			if !slices.Contains(c.Scopes, sc) {
				missing = append(missing, sc)
			}
		}
		if len(missing) > 0 {
			writeError(w, http.StatusForbidden, "access_denied", "Client has not been granted scopes: "+clip(strings.Join(missing, ", ")), "")
			return
		}
	}
	org := p.Get("organization")
	if org != "" && !slices.Contains(c.Organizations, org) {
		writeError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("Client %q is not a member of organization %q", id, clip(org)), "")
		return
	}
	now := s.now()
	claims := map[string]any{
		"iss": s.Issuer(), "sub": id + "@clients", "aud": aud, "azp": id,
		// exp is rounded up, so that the token lives at least expires_in
		// from now: rounding down would end it up to a second early, which
		// matters for the short lifetimes of resilience tests.
		"iat": now.Unix(), "exp": now.Add(lifetime + time.Second - 1).Unix(), "jti": randomID(),
		"gty": "client-credentials",
	}
	if len(c.Scopes) > 0 {
		claims["scope"] = strings.Join(c.Scopes, " ")
	}
	if org != "" {
		claims["org_id"] = org
	}
	tok, err := s.Sign(claims)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "server_error", "signing failed", "")
		return
	}
	s.mu.Lock()
	s.issued[id]++
	s.mu.Unlock()
	resp := map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": int64(lifetime / time.Second)}
	if len(c.Scopes) > 0 {
		resp["scope"] = strings.Join(c.Scopes, " ")
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, resp)
}

// Sign returns an RS256 JWT with the given claims, signed with the server's
// key, as if the server had issued it: for tests that need a token the
// token endpoint would not issue (another audience, an expired one).
func (s *Server) Sign(claims map[string]any) (string, error) {
	return jwt.Sign(s.key, jwt.RS256, s.kid, claims)
}

func randomID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// constantTimeEqual compares hashes, so that neither the content nor the
// length of the secret leaks through timing.
func constantTimeEqual(a, b string) bool {
	x, y := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(x[:], y[:]) == 1
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200]
	}
	return s
}

func writeError(w http.ResponseWriter, status int, code, desc, uri string) {
	body := map[string]string{"error": code, "error_description": desc}
	if uri != "" {
		body["error_uri"] = uri
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
