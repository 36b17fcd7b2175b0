// Command pool is the "try it locally" program of docs/pool.md: one Pool
// for two APIs and an Auth0 Organization. Run it beside
//
//	m2mtoken serve --client-secret dev --audience https://billing.example.com/ --audience https://search.example.com/ --scope read:index --organization org_acme
//
// after pasting the export lines serve prints, with go run ./examples/pool.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strings"

	"github.com/m2mtoken/m2mtoken"
)

const (
	billing = "https://billing.example.com/" // AUTH0_AUDIENCE: the pool's default request
	search  = "https://search.example.com/"
	acme    = "org_acme" // an Auth0 Organization's ID (or name)
)

func main() {
	cfg, err := m2mtoken.ConfigFromEnv() // AUTH0_DOMAIN, AUTH0_CLIENT_ID, AUTH0_CLIENT_SECRET, AUTH0_AUDIENCE
	if err != nil {
		log.Fatal(err) // names the variable to fix
	}
	pool, err := m2mtoken.NewPool(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	client := pool.Client() // each request's token comes from its context
	ctx := context.Background()
	// The API that m2mtoken serve runs, which says what each token is for.
	api := strings.TrimSuffix(os.Getenv("API_URL"), "/")

	get := func(ctx context.Context, url string) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			log.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		fmt.Print(resp.StatusCode, " ", string(body))
	}
	get(ctx, api+"/v1/invoices") // the default request: billing
	get(m2mtoken.WithTokenRequest(ctx, m2mtoken.TokenRequest{Audience: search, Scopes: []string{"read:index"}}), api+"/v1/q?x=1")
	get(m2mtoken.WithTokenRequest(ctx, m2mtoken.TokenRequest{Audience: billing, Organization: acme}), api+"/v1/invoices")

	// Or a token in hand, for a gRPC call or a message header.
	tok, err := pool.Token(ctx, m2mtoken.TokenRequest{Audience: search, Scopes: []string{"read:index"}})
	if err != nil {
		log.Fatal(err)
	}
	st := pool.Stats()
	fmt.Println(tok.Type(), st.Tokens, "tokens,", st.TokenRequests, "token requests")
}
