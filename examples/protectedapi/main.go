// Command protectedapi is the Auth0 API quickstart's three routes in Go,
// validated by github.com/auth0/go-jwt-middleware/v2:
//
//	/api/public          no token needed
//	/api/private         a valid token for the API's audience
//	/api/private-scoped  a valid token with the read:messages scope
//
// Run it against a tenant with AUTH0_DOMAIN and AUTH0_AUDIENCE set, or with
// no settings against a local m2mtest issuer, which it starts and then calls
// through an m2mtoken client.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	jwtmiddleware "github.com/auth0/go-jwt-middleware/v2"
	"github.com/auth0/go-jwt-middleware/v2/jwks"
	"github.com/auth0/go-jwt-middleware/v2/validator"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// scopeClaims reads Auth0's space-separated scope claim.
type scopeClaims struct {
	Scope string `json:"scope"`
}

func (c *scopeClaims) Validate(context.Context) error { return nil }

func (c *scopeClaims) has(scope string) bool { return slices.Contains(strings.Fields(c.Scope), scope) }

// newAPI returns the three routes, validating tokens from issuer (with its
// trailing slash, as in the iss claim) for audience.
func newAPI(issuer, audience string) (http.Handler, error) {
	issuerURL, err := url.Parse(issuer)
	if err != nil {
		return nil, err
	}
	provider := jwks.NewCachingProvider(issuerURL, 5*time.Minute)
	v, err := validator.New(provider.KeyFunc, validator.RS256, issuerURL.String(), []string{audience},
		validator.WithCustomClaims(func() validator.CustomClaims { return &scopeClaims{} }),
		validator.WithAllowedClockSkew(time.Minute))
	if err != nil {
		return nil, err
	}
	// RFC 6750: a missing or bad token is 401 with a Bearer challenge.
	mw := jwtmiddleware.New(v.ValidateToken, jwtmiddleware.WithErrorHandler(func(w http.ResponseWriter, r *http.Request, err error) {
		challenge := `Bearer realm="api"`
		if !errors.Is(err, jwtmiddleware.ErrJWTMissing) {
			challenge += `, error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
		writeJSON(w, http.StatusUnauthorized, "Unauthorized")
	}))
	mux := http.NewServeMux()
	mux.HandleFunc("/api/public", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, "Hello from a public endpoint! You don't need to be authenticated to see this.")
	})
	mux.Handle("/api/private", mw.CheckJWT(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, "Hello from a private endpoint! You need to be authenticated to see this.")
	})))
	mux.Handle("/api/private-scoped", mw.CheckJWT(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims := r.Context().Value(jwtmiddleware.ContextKey{}).(*validator.ValidatedClaims)
		if c, ok := claims.CustomClaims.(*scopeClaims); !ok || !c.has("read:messages") {
			w.Header().Set("WWW-Authenticate", `Bearer realm="api", error="insufficient_scope", scope="read:messages"`)
			writeJSON(w, http.StatusForbidden, "Insufficient scope.")
			return
		}
		writeJSON(w, 200, "Hello from a private endpoint! You need to be authenticated and have a scope of read:messages to see this.")
	})))
	return mux, nil
}

func writeJSON(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

func main() {
	if d := os.Getenv("AUTH0_DOMAIN"); d != "" {
		api, err := newAPI("https://"+strings.TrimSuffix(strings.TrimPrefix(d, "https://"), "/")+"/", os.Getenv("AUTH0_AUDIENCE"))
		if err != nil {
			log.Fatal(err)
		}
		log.Println("listening on 127.0.0.1:3010")
		log.Fatal(http.ListenAndServe("127.0.0.1:3010", api))
	}
	// No tenant: a local issuer, the API, and a client calling it.
	const audience = "https://quickstarts/api"
	iss := m2mtest.NewServer(m2mtest.Client{ID: "svc", Secret: "local-secret", Audiences: []string{audience}, Scopes: []string{"read:messages"}})
	defer iss.Close()
	api, err := newAPI(iss.Issuer(), audience)
	if err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewServer(api)
	defer srv.Close()
	src, err := m2mtoken.New(m2mtoken.Config{TokenURL: iss.TokenURL(), ClientID: "svc", ClientSecret: "local-secret", Audience: audience})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	for _, path := range []string{"/api/public", "/api/private", "/api/private-scoped"} {
		resp, err := src.Client().Get(srv.URL + path)
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("%-20s %d %s", path, resp.StatusCode, body)
	}
}
