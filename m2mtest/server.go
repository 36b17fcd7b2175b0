// Package m2mtest is an in-process OAuth 2.0 token issuer that behaves like
// an Auth0 tenant's client-credentials endpoint, for testing services that
// get tokens and APIs that check them, without a real tenant.
//
// A [Server] issues RS256 JWT access tokens with Auth0's claims (iss, sub =
// CLIENT_ID@clients, aud, azp, scope, iat, exp, jti, gty), publishes its key
// at /.well-known/jwks.json and its metadata at
// /.well-known/openid-configuration, and answers bad requests the way Auth0
// does. It issues DPoP-bound tokens (RFC 9449) to clients that send a
// proof, checks proofs strictly, and can require nonces. It can inject
// faults (latency, error statuses, 429 with rate-limit headers, malformed
// or truncated bodies, dropped connections), rate limit like Auth0, and
// apply Auth0's per-client and per-organization token quotas, for
// resilience tests. Credentials change while it runs as they do on real
// servers: a client's secret rotates ([Server.RotateSecret]), its Private
// Key JWT keys are added and removed ([Server.AddKey]), and a client may
// trust a platform's tokens as its client assertion ([Server.Trust], with
// a [Platform] to issue them). Clients may authenticate with their TLS
// client certificate (RFC 8705: tls_client_auth, checked against the
// server's client CAs and the subject registered, or
// self_signed_tls_client_auth, against the certificates registered) and
// get tokens bound to it (cnf.x5t#S256), which [Server.Protect] accepts
// only over a connection with that certificate; [NewMTLSAliasServer]
// serves them at an mTLS endpoint alias as Auth0 does, and a [CA] issues
// certificates for tests.
//
// It uses only the standard library.
package m2mtest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

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
	clients   map[string]*clientState
	lifetime  time.Duration
	latency   time.Duration
	queue     []Fault
	faultRate float64
	faultPool []Fault
	bucket    *bucket
	requests  int
	perClient map[string]int
	issued    map[string]int
	clock     atomic.Pointer[func() time.Time] // nil: time.Now
	audiences map[string]bool
	seenJTI   map[string]time.Time // assertion IDs until their expiry
	dpop      dpopState
	quotas    map[string][]*quotaBucket

	routes *http.ServeMux // added with Handle

	clientCAs  *x509.CertPool    // trusted for tls_client_auth
	alias      *httptest.Server  // the mTLS endpoint alias, if any
	transports []*http.Transport // CertificateClient's, closed with the server
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
	return ListenConfig{Addr: addr}.Listen(clients...)
}

// ListenConfig says where and how [ListenConfig.Listen] serves: for an
// issuer that other processes or containers reach, as m2mtoken serve runs
// it.
type ListenConfig struct {
	// Addr is the address to listen on, such as "127.0.0.1:0" or
	// "0.0.0.0:8443".
	Addr string
	// TLS, if set, serves https with its Certificates.
	TLS *tls.Config
	// ClientCAs, if set, are the CAs whose certificates a tls_client_auth
	// client may present, checked at the token endpoint; nil means
	// TLS.ClientCAs. For the server to see any client certificate, TLS
	// must ask for them (ClientAuth tls.RequestClientCert, as m2mtoken
	// serve does); a TLS.ClientCAs left empty lets clients send
	// self-signed certificates too, which Go's and other TLS clients hold
	// back from a server that names the CAs it accepts.
	ClientCAs *x509.CertPool
	// Host, if set, is the host in the server's URL, and so in its issuer
	// and token URL: the name clients reach it by, such as a container's
	// service name. Empty means the listener's address, with an
	// unspecified one (0.0.0.0, [::]) replaced by 127.0.0.1.
	Host string
	// ErrorLog, if set, is the server's http.Server.ErrorLog: where
	// failed TLS handshakes and the like are logged. Nil means the log
	// package's standard logger.
	ErrorLog *log.Logger
}

// Listen starts an issuer with the given clients.
func (lc ListenConfig) Listen(clients ...Client) (*Server, error) {
	l, err := net.Listen("tcp", lc.Addr)
	if err != nil {
		return nil, err
	}
	s := newServer(clients)
	s.clientCAs = lc.ClientCAs
	if s.clientCAs == nil && lc.TLS != nil {
		s.clientCAs = lc.TLS.ClientCAs
	}
	srv := httptest.NewUnstartedServer(s)
	srv.Listener.Close()
	srv.Listener = l
	srv.TLS = lc.TLS
	srv.Config.ErrorLog = lc.ErrorLog
	host, port, _ := net.SplitHostPort(l.Addr().String())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	if lc.Host != "" {
		host = lc.Host
	}
	s.startAt(srv, lc.TLS != nil, net.JoinHostPort(host, port))
	return s, nil
}

// start sets URL before the server serves its first request, so that
// handlers can read it without a lock.
func (s *Server) start(srv *httptest.Server, tls bool) {
	s.startAt(srv, tls, srv.Listener.Addr().String())
}

func (s *Server) startAt(srv *httptest.Server, tls bool, hostPort string) {
	s.srv = srv
	scheme := "http://"
	if tls {
		scheme = "https://"
	}
	s.URL = scheme + hostPort
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
		clients: map[string]*clientState{}, lifetime: DefaultLifetime,
		perClient: map[string]int{}, issued: map[string]int{},
		audiences: map[string]bool{}, seenJTI: map[string]time.Time{},
		dpop:   newDPoPState(),
		routes: http.NewServeMux(),
		quotas: map[string][]*quotaBucket{},
	}
	for _, c := range clients {
		s.AddClient(c)
	}
	return s
}

// now reads the server's clock.
func (s *Server) now() time.Time {
	if f := s.clock.Load(); f != nil {
		return (*f)()
	}
	return time.Now()
}

// Close shuts the server down.
func (s *Server) Close() {
	s.srv.Close()
	if s.alias != nil {
		s.alias.Close()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, tr := range s.transports {
		tr.CloseIdleConnections()
	}
}

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

// AddClient registers c, replacing a client with the same ID (and the
// secrets, keys and trusted issuers it was given since).
func (s *Server) AddClient(c Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.Audiences = slices.Clone(c.Audiences)
	c.Scopes = slices.Clone(c.Scopes)
	c.Organizations = slices.Clone(c.Organizations)
	s.clients[c.ID] = newClientState(c)
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

// ServeHTTP serves the token endpoint, the JWKS, the discovery document,
// and the routes added with [Server.Handle].
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
		s.routes.ServeHTTP(w, r)
	}
}

// Handle serves pattern (an [http.ServeMux] pattern) with h on the
// server's own address, beside the issuer's routes: for an API protected
// with [Server.Protect] that clients reach where they reach the issuer, as
// m2mtoken serve does with the Auth0 quickstart's /api routes. The
// issuer's own paths cannot be replaced.
func (s *Server) Handle(pattern string, h http.Handler) { s.routes.Handle(pattern, h) }

func (s *Server) jwks(w http.ResponseWriter) {
	pub := s.key.PublicKey
	writeJSON(w, 200, map[string]any{"keys": []map[string]any{{
		"kty": "RSA", "use": "sig", "alg": "RS256", "kid": s.kid,
		"n": b64(pub.N.Bytes()), "e": b64(bigEndian(pub.E)),
	}}})
}

func (s *Server) discovery(w http.ResponseWriter) {
	doc := map[string]any{
		"issuer":                                s.Issuer(),
		"token_endpoint":                        s.TokenURL(),
		"jwks_uri":                              s.JWKSURL(),
		"grant_types_supported":                 []string{"client_credentials"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "client_secret_basic", "private_key_jwt"},
		"token_endpoint_auth_signing_alg_values_supported": []string{"RS256", "PS256", "ES256"},
		"id_token_signing_alg_values_supported":            []string{"RS256"},
		"dpop_signing_alg_values_supported":                DPoPAlgorithms,
		"response_types_supported":                         []string{"token"},
		"subject_types_supported":                          []string{"public"},
	}
	if strings.HasPrefix(s.URL, "https://") {
		// Over https, a client may authenticate with its certificate
		// and get tokens bound to it (RFC 8705 section 3.3).
		doc["token_endpoint_auth_methods_supported"] = []string{"client_secret_post", "client_secret_basic", "private_key_jwt", tlsClientAuth, selfSignedClientAuth}
		doc["tls_client_certificate_bound_access_tokens"] = true
	}
	if s.alias != nil {
		doc["mtls_endpoint_aliases"] = map[string]string{"token_endpoint": s.MTLSTokenURL()}
	}
	writeJSON(w, 200, doc)
}

func bigEndian(e int) []byte {
	b := []byte{byte(e >> 24), byte(e >> 16), byte(e >> 8), byte(e)}
	for len(b) > 1 && b[0] == 0 {
		b = b[1:]
	}
	return b
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

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
