// The protected API serve serves: the Auth0 quickstart's routes, checking
// tokens as m2mtest's Protect does, for any of its audiences.

package main

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/m2mtoken/m2mtoken/internal/jwt"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// serveQuickstartAPI adds the Auth0 quickstart's routes with handle,
// checking tokens as m2mtest's Protect does, for any of audiences.
func serveQuickstartAPI(handle func(string, http.Handler), s *m2mtest.Server, audiences []string) {
	message := func(msg string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]string{"message": msg})
		})
	}
	handle("/api/public", message("Hello from a public endpoint! You don't need to be authenticated to see this."))
	handle("/api/private", protectAny(s, audiences, nil, message("Hello from a private endpoint! You need to be authenticated to see this.")))
	handle("/api/private-scoped", protectAny(s, audiences, []string{"read:messages"},
		message("Hello from a private endpoint! You need to be authenticated and have a scope of read:messages to see this.")))
}

// protectAny is m2mtest's Protect for whichever of audiences the request's
// token names, so that one API serves them all; a token for none of them
// is checked against the first, and refused as Protect refuses it.
func protectAny(s *m2mtest.Server, audiences, scopes []string, next http.Handler) http.Handler {
	byAudience := map[string]http.Handler{}
	for _, a := range audiences {
		byAudience[a] = s.Protect(a, scopes, next)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		h := byAudience[tokenClaims(tok).Aud]
		if h == nil {
			h = byAudience[audiences[0]]
		}
		h.ServeHTTP(w, r)
	})
}

// servedClaims are the claims of a token that the API's answers show.
type servedClaims struct {
	Aud string `json:"aud"`
	Org string `json:"org_id"`
}

// tokenClaims reads tok's claims without checking it: to choose what to
// check it against, or to show what Protect has checked.
func tokenClaims(tok string) servedClaims {
	var c servedClaims
	jwt.Unverified(strings.TrimSpace(tok), &c)
	return c
}
