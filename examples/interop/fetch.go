package main

import (
	"context"
	"net/url"
	"strings"

	"golang.org/x/oauth2"

	"github.com/m2mtoken/m2mtoken"
)

// config is the m2mtoken configuration for one of server.mjs's clients:
// interop-post authenticates in the body, interop-basic with a Basic header.
func config(tokenURL, clientID, secret, resource string) m2mtoken.Config {
	cfg := m2mtoken.Config{
		TokenURL:       tokenURL,
		ClientID:       clientID,
		ClientSecret:   secret,
		Scopes:         []string{"read:messages"},
		EndpointParams: url.Values{"resource": {resource}}, // RFC 8707
	}
	if strings.HasSuffix(clientID, "-basic") {
		cfg.AuthMethod = m2mtoken.ClientSecretBasic
	}
	return cfg
}

func fetch(ctx context.Context, tokenURL, clientID, secret, resource string) (*oauth2.Token, error) {
	src, err := m2mtoken.New(config(tokenURL, clientID, secret, resource))
	if err != nil {
		return nil, err
	}
	defer src.Close()
	return src.TokenContext(ctx)
}
