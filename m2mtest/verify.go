package m2mtest

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/m2mtoken/m2mtoken/internal/jwt"
	"github.com/m2mtoken/m2mtoken/internal/printable"
)

// Verify checks that tok is an unexpired bearer token this server signed
// for audience, and returns its claims. It is what an API behind this
// issuer would check; see also [Server.Protect]. A bound token is refused:
// one with cnf.jkt is good only with a DPoP proof, one with cnf.x5t#S256
// only over a connection with its client certificate, which
// [Server.VerifyRequest] checks.
func (s *Server) Verify(tok, audience string) (map[string]any, error) {
	claims, err := s.verify(tok, audience)
	if err != nil || claims["cnf"] == nil {
		return claims, err
	}
	if cnf, _ := claims["cnf"].(map[string]any); cnf["jkt"] == nil && cnf["x5t#S256"] != nil {
		return nil, errors.New("the token is bound to a client certificate (cnf.x5t#S256): it is valid only over a connection with that certificate; check the request with VerifyRequest")
	}
	return nil, errors.New("the token is DPoP-bound (cnf.jkt): it is valid only with a DPoP proof; check the request with VerifyRequest")
}

// verify is Verify for any token, bound or not.
func (s *Server) verify(tok, audience string) (map[string]any, error) {
	var claims map[string]any
	h, err := jwt.Verify(tok, &s.key.PublicKey, &claims)
	if err != nil {
		return nil, fmt.Errorf("the token %w", err)
	}
	if h.Alg != jwt.RS256 || h.Kid != s.kid {
		return nil, fmt.Errorf("unexpected alg %q or kid %q", h.Alg, h.Kid)
	}
	if claims["iss"] != s.Issuer() {
		return nil, fmt.Errorf("issuer %v is not %s", claims["iss"], s.Issuer())
	}
	if !hasAudience(claims["aud"], audience) {
		return nil, fmt.Errorf("audience %v is not %s", claims["aud"], audience)
	}
	exp, _ := claims["exp"].(float64)
	if now := float64(s.now().Unix()); exp <= now {
		return nil, errors.New("token expired")
	}
	return claims, nil
}

func hasAudience(aud any, want string) bool {
	switch a := aud.(type) {
	case string:
		return a == want
	case []any:
		for _, x := range a {
			if x == want {
				return true
			}
		}
	}
	return false
}

// Protect wraps next so that it is reached only with a token that
// [Server.VerifyRequest] accepts for audience (a bearer token, a
// DPoP-bound token with a valid proof, a certificate-bound token over a
// connection with its certificate) and that carries every scope in
// scopes. It answers like an RFC 6750 and RFC 9449 resource server (and
// says why in the body too): 401
// with WWW-Authenticate `Bearer realm="api"` for a missing token,
// `Bearer error="invalid_token"` for a bad one, `DPoP error="..."`
// (invalid_token, invalid_dpop_proof, or use_dpop_nonce with a DPoP-Nonce
// header) for a DPoP-bound one; 403 `insufficient_scope` for a missing
// scope.
func (s *Server) Protect(audience string, scopes []string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n := s.currentNonce(true); n != "" {
			w.Header().Set("DPoP-Nonce", n)
		}
		claims, err := s.VerifyRequest(r, audience)
		if err != nil {
			re := err.(*RequestError)
			if re.Nonce != "" {
				w.Header().Set("DPoP-Nonce", re.Nonce)
			}
			w.Header().Set("WWW-Authenticate", re.challenge())
			msg := "invalid token"
			if re.Code == "" {
				msg = "missing bearer token"
			}
			if re.Description != "" {
				// It may quote the token's claims: escaped, as in the header.
				msg += ": " + printable.Line(re.Description, 500)
			}
			http.Error(w, msg, http.StatusUnauthorized)
			return
		}
		granted, _ := claims["scope"].(string)
		for _, sc := range scopes {
			if !slices.Contains(strings.Fields(granted), sc) {
				w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="api", error="insufficient_scope", scope=%q`, strings.Join(scopes, " ")))
				http.Error(w, "insufficient scope", http.StatusForbidden)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// setNow replaces the server's clock, for tests that move time.
func (s *Server) setNow(f func() time.Time) { s.SetClock(f) }
