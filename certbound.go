// Certificate-bound tokens (RFC 8705 section 3): which certificate a
// token is bound to, checked against the certificate its request
// presented (certtransport.go), or its cache key names.

package m2mtoken

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"

	"github.com/m2mtoken/m2mtoken/internal/jwt"
)

// certBinding returns the thumbprint of the certificate a token is bound
// to (RFC 8705 section 3: cnf.x5t#S256, in a JWT access token or in the
// token answer), or "".
func certBinding(e *Entry) string {
	var claims struct {
		Cnf struct {
			X5t string `json:"x5t#S256"`
		} `json:"cnf"`
	}
	if jwt.Unverified(e.AccessToken, &claims) == nil && claims.Cnf.X5t != "" {
		return claims.Cnf.X5t
	}
	if cnf, ok := e.Extra["cnf"].(map[string]any); ok {
		if t, _ := cnf["x5t#S256"].(string); t != "" {
			return t
		}
	}
	return ""
}

// boundElsewhere is the error of a token bound to another certificate
// (x5t, from the answer) than the one its request presented (cv): the API
// would refuse it over every connection the client makes. A proxy that
// ends TLS in front of the token endpoint presents its own certificate,
// or none.
func (c *client) boundElsewhere(x5t string, cv *certValue) *TokenError {
	named := "the certificate " + x5t
	if !isThumbprint(x5t) {
		// Not a thumbprint: what the answer put there is not shown (an
		// endpoint that echoes the request could put the secret there).
		named = "something that is not a certificate's thumbprint"
	}
	return &TokenError{URL: c.tokenURL, StatusCode: http.StatusOK,
		Description: "the token is bound to " + named + " (cnf.x5t#S256), not to the client certificate the request presented (" + cv.thumb + ")",
		Hint:        "does a proxy between the client and the token endpoint end TLS and present a certificate of its own? Token requests must reach the server, or its mTLS edge, with the certificate of " + c.name(c.cert.field())}
}

// certBoundOnly reports whether a token of a client with a certificate is
// bound to a certificate (request checks that it is the one presented)
// and names no DPoP key (cnf.jkt).
func (c *client) certBoundOnly(e *Entry) bool {
	if c.cert == nil || certBinding(e) == "" {
		return false
	}
	var claims struct {
		Cnf struct {
			JKT string `json:"jkt"`
		} `json:"cnf"`
	}
	if jwt.Unverified(e.AccessToken, &claims) == nil && claims.Cnf.JKT != "" {
		return false
	}
	if cnf, ok := e.Extra["cnf"].(map[string]any); ok && cnf["jkt"] != nil {
		return false
	}
	return true
}

// boundTo returns the thumbprint of the client certificate a token is
// taken to be bound to: the one it names (certBinding); else, for a token
// that cannot say (unreadable), cv's: the certificate its request
// presented, or the one its cache key names. An opaque token may be bound without saying
// so (oidc-provider's are, for a client registered with
// tls_client_certificate_bound_access_tokens, and only introspection
// tells), and the API would refuse it over the connections of a renewed
// certificate; an unbound one costs a token request when the certificate
// changes. A JWT that names no certificate is not bound.
func (c *client) boundTo(e *Entry, cv *certValue) string {
	if x5t := certBinding(e); x5t != "" || cv == nil || !unreadable(e) {
		return x5t
	}
	return cv.thumb
}

// unreadable reports whether a token's binding to a certificate cannot be
// read: not a JWT, no cnf in the answer, and not a DPoP token (bound to a
// key instead).
func unreadable(e *Entry) bool {
	var claims struct{}
	if jwt.Unverified(e.AccessToken, &claims) == nil {
		return false
	}
	if _, ok := e.Extra["cnf"]; ok {
		return false
	}
	return !strings.EqualFold(e.TokenType, "DPoP")
}

// isThumbprint reports whether s has the form of an RFC 8705 thumbprint:
// a SHA-256 digest in unpadded base64url, 43 characters.
func isThumbprint(s string) bool {
	b, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil && len(b) == sha256.Size
}
