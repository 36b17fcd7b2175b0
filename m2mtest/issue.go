// Clients, their authentication, and issuing tokens.

package m2mtest

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
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
	// an *rsa.PublicKey (RS256, PS256) or a P-256 *ecdsa.PublicKey (ES256),
	// with no key ID (assertions with any kid or none are checked with
	// it). A client may have a Secret, a PublicKey or both; more keys are
	// added with [Server.AddKey], secrets rotated with
	// [Server.RotateSecret], and platforms trusted with [Server.Trust].
	PublicKey crypto.PublicKey
	// RequireDPoP refuses the client's token requests without a DPoP proof
	// (400 invalid_request), as an Auth0 API that requires sender
	// constraining does. With or without it, a request with a valid proof
	// gets a DPoP-bound token: token_type "DPoP" and a cnf.jkt claim.
	RequireDPoP bool
	// IgnoreDPoP answers Bearer tokens even to requests with a DPoP proof
	// (the proof is still checked), as Auth0 does for an API that does not
	// constrain tokens.
	IgnoreDPoP bool
	// Certificate, if set, lets the client authenticate with its TLS
	// client certificate (RFC 8705): a token request that sends client_id
	// and no secret or assertion, over a connection with a certificate
	// that Certificate accepts (tls_client_auth or
	// self_signed_tls_client_auth), on a server that asks for one
	// ([NewMTLSAliasServer], [NewMTLSServer], or a [ListenConfig] whose
	// TLS does). A second credential is added with
	// [Server.AddCertificate]. A refused certificate gets 401
	// invalid_client with what did not match.
	Certificate ClientCertificate
	// CertificateBinding says which of the client's tokens are bound to
	// the certificate of their request (cnf.x5t#S256): by default, those
	// of a request authenticated by the certificate.
	CertificateBinding CertificateBinding
}

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
	if n := s.currentNonce(false); n != "" {
		w.Header().Set("DPoP-Nonce", n)
	}
	s.issue(w, r, params, basicID, basicSecret)
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
func (s *Server) issue(w http.ResponseWriter, r *http.Request, p url.Values, basicID, basicSecret string) {
	gt := p.Get("grant_type")
	if gt == "" {
		writeError(w, http.StatusBadRequest, "invalid_request", "Missing required parameter: grant_type", "")
		return
	}
	id, secret := p.Get("client_id"), p.Get("client_secret")
	assertion, assertionType := p.Get("client_assertion"), p.Get("client_assertion_type")
	if assertion != "" || p.Has("client_assertion_type") {
		if assertionType != jwtBearer && assertionType != jwtSpiffe {
			writeError(w, http.StatusBadRequest, "invalid_request", "client_assertion_type must be "+jwtBearer+" or "+jwtSpiffe, "")
			return
		}
		if secret != "" || basicID != "" {
			writeError(w, http.StatusBadRequest, "invalid_request", "Only one client authentication method may be used", "")
			return
		}
		if id == "" {
			// The assertion names its client: as its issuer, or as the
			// one client that trusts its issuer and subject. Its
			// signature is checked below.
			var cl struct{ Iss, Sub string }
			jwt.Unverified(assertion, &cl)
			id = cl.Iss
			if c := s.trustingClient(cl.Iss, cl.Sub); c != "" {
				id = c
			}
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
	cs, known := s.clients[id]
	var c Client
	var keys []Key
	var trusts []TrustedIssuer
	var certs []ClientCertificate
	secretOK := false
	if known {
		c, keys, trusts, certs = cs.Client, slices.Clone(cs.keys), slices.Clone(cs.trusts), slices.Clone(cs.certs)
		secretOK = cs.acceptsSecret(secret, s.now())
	}
	lifetime := s.lifetime
	knownAudience := s.audiences[p.Get("audience")]
	s.mu.Unlock()
	if gt != "client_credentials" {
		writeError(w, http.StatusForbidden, "unsupported_grant_type", "Unsupported grant type: "+clip(gt), "")
		return
	}
	// A request with neither a secret nor an assertion authenticates with
	// the client's certificate, if it has one (RFC 8705 section 2).
	byCertificate := assertion == "" && basicID == "" && !p.Has("client_secret") && len(certs) > 0
	switch {
	case assertion != "":
		if !known {
			writeError(w, http.StatusUnauthorized, "access_denied", "Unauthorized", "")
			return
		}
		if err := s.checkAssertion(c, keys, trusts, assertion, assertionType); err != nil {
			writeError(w, http.StatusUnauthorized, "invalid_client", "Invalid client assertion: "+err.Error(), "")
			return
		}
	case byCertificate:
		if err := s.checkClientCertificate(r, id, certs); err != nil {
			writeError(w, http.StatusUnauthorized, "invalid_client", "Invalid client certificate: "+err.Error(), "")
			return
		}
	case !secretOK:
		writeError(w, http.StatusUnauthorized, "access_denied", "Unauthorized", "")
		return
	}
	// Auth0 sends the quota headers on every answer to a known client.
	s.chargeQuota(w.Header(), id, p.Get("organization"), false)
	if c.NoClientCredentials {
		writeError(w, http.StatusForbidden, "unauthorized_client", "Grant type 'client_credentials' not allowed for the client.", errorURIGrantDoc)
		return
	}
	jkt, ok := s.tokenProof(w, r, c)
	if !ok {
		return
	}
	x5t, ok := s.tokenBinding(w, r, c, byCertificate)
	if !ok {
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
	if exceeded, retry := s.chargeQuota(w.Header(), id, org, true); exceeded != "" {
		w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(retry.Seconds())), 10))
		writeError(w, http.StatusTooManyRequests, "too_many_requests", exceeded+" quota exceeded", "")
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
	tokenType := "Bearer"
	cnf := map[string]string{}
	if jkt != "" {
		cnf["jkt"] = jkt
		tokenType = "DPoP"
	}
	if x5t != "" {
		cnf["x5t#S256"] = x5t
	}
	if len(cnf) > 0 {
		claims["cnf"] = cnf
	}
	tok, err := s.Sign(claims)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "server_error", "signing failed", "")
		return
	}
	s.mu.Lock()
	s.issued[id]++
	s.mu.Unlock()
	resp := map[string]any{"access_token": tok, "token_type": tokenType, "expires_in": int64(lifetime / time.Second)}
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
