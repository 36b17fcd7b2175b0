// Command management lists a tenant's applications through the Auth0
// Management API with github.com/auth0/go-auth0/v2, its requests authorized
// by an m2mtoken client: the token is cached, refreshed in the background
// and shared with the rest of the program, instead of go-auth0 keeping a
// token source of its own.
//
//	AUTH0_DOMAIN=tenant.eu.auth0.com AUTH0_CLIENT_ID=... AUTH0_CLIENT_SECRET=... go run ./management
//
// The application needs a grant for the Management API with read:clients.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"

	mgmtclient "github.com/auth0/go-auth0/v2/management/client"
	"github.com/auth0/go-auth0/v2/management/option"

	"github.com/auth0/go-auth0/v2/management"

	"github.com/m2mtoken/m2mtoken"
)

// listApplications prints the tenant's applications. domain is the tenant
// (the Management API's audience is https://DOMAIN/api/v2/); src supplies
// tokens for it. insecure talks plain http, for a local test server.
func listApplications(ctx context.Context, w io.Writer, domain string, src *m2mtoken.TokenSource, insecure bool) error {
	opts := []option.RequestOption{option.WithHTTPClient(src.Client())}
	if insecure {
		opts = append(opts, option.WithInsecure())
	}
	api, err := mgmtclient.New(domain, opts...)
	if err != nil {
		return err
	}
	page, err := api.Clients.List(ctx, &management.ListClientsRequestParameters{})
	if err != nil {
		return err
	}
	for _, c := range page.Results {
		fmt.Fprintf(w, "%s\t%s\n", c.GetClientID(), c.GetName())
	}
	return nil
}

func main() {
	domain := os.Getenv("AUTH0_DOMAIN")
	src, err := m2mtoken.New(m2mtoken.Config{
		Domain:       domain,
		ClientID:     os.Getenv("AUTH0_CLIENT_ID"),
		ClientSecret: os.Getenv("AUTH0_CLIENT_SECRET"),
		Audience:     "https://" + domain + "/api/v2/",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	if err := listApplications(context.Background(), os.Stdout, domain, src, false); err != nil {
		log.Fatal(err)
	}
}
