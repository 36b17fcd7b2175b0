package m2mtoken_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"

	"golang.org/x/oauth2"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// A service with one Auth0 application calls two APIs (billing, search),
// and calls billing on behalf of its tenants, each an Auth0 Organization.
// One pool holds every token: one client, one connection pool, one
// memory of the client's errors and quotas.
func ExamplePool() {
	issuer := m2mtest.NewServer(m2mtest.Client{ID: "svc", Secret: "s3cret",
		Audiences: []string{"https://billing/", "https://search/"}, Scopes: []string{"read"}, Organizations: []string{"org_acme"}})
	defer issuer.Close()
	hello := func(w http.ResponseWriter, r *http.Request) {
		claims, _ := issuer.VerifyRequest(r, r.Header.Get("X-Audience"))
		fmt.Fprintf(w, "%s for %v", claims["aud"], claims["org_id"])
	}
	billing := httptest.NewServer(issuer.Protect("https://billing/", nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Set("X-Audience", "https://billing/")
		hello(w, r)
	})))
	defer billing.Close()
	search := httptest.NewServer(issuer.Protect("https://search/", []string{"read"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Set("X-Audience", "https://search/")
		hello(w, r)
	})))
	defer search.Close()

	pool, err := m2mtoken.NewPool(m2mtoken.Config{
		TokenURL:     issuer.TokenURL(), // or Domain: "tenant.eu.auth0.com"
		ClientID:     "svc",
		ClientSecret: "s3cret",
		Audience:     "https://billing/", // the default request
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	client := pool.Client() // each request's token comes from its context

	get := func(ctx context.Context, url string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		fmt.Println(resp.StatusCode, string(body))
	}
	ctx := context.Background()
	get(ctx, billing.URL) // the default request: billing
	get(m2mtoken.WithTokenRequest(ctx, m2mtoken.TokenRequest{Audience: "https://search/", Scopes: []string{"read"}}), search.URL)
	get(m2mtoken.WithTokenRequest(ctx, m2mtoken.TokenRequest{Audience: "https://billing/", Organization: "org_acme"}), billing.URL)

	// Or a token in hand, for a gRPC call or a message header.
	tok, err := pool.Token(ctx, m2mtoken.TokenRequest{Audience: "https://search/", Scopes: []string{"read"}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(tok.Type(), pool.Stats().Tokens, "tokens,", pool.Stats().TokenRequests, "token requests")
	// Output:
	// 200 https://billing/ for <nil>
	// 200 https://search/ for <nil>
	// 200 https://billing/ for org_acme
	// Bearer 3 tokens, 3 token requests
}

// Source returns one token's *TokenSource, the same for equal requests
// (scopes in any order), for whatever takes an oauth2.TokenSource: a gRPC
// client's per-RPC credentials, oauth2.NewClient.
func ExamplePool_Source() {
	issuer := m2mtest.NewServer(m2mtest.Client{ID: "svc", Secret: "s3cret",
		Audiences: []string{"https://billing/", "https://search/"}, Scopes: []string{"read", "write"}})
	defer issuer.Close()
	pool, err := m2mtoken.NewPool(m2mtoken.Config{TokenURL: issuer.TokenURL(), ClientID: "svc", ClientSecret: "s3cret", Audience: "https://billing/"})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	src, err := pool.Source(m2mtoken.TokenRequest{Audience: "https://search/", Scopes: []string{"read", "write"}})
	if err != nil {
		log.Fatal(err)
	}
	same, _ := pool.Source(m2mtoken.TokenRequest{Audience: "https://search/", Scopes: []string{"write", "read"}})
	var ts oauth2.TokenSource = src
	tok, err := ts.Token()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(src == same, tok.Type(), pool.Stats().TokenRequests, "token request")
	// Output: true Bearer 1 token request
}
