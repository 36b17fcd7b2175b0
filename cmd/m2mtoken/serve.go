package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/m2mtoken/m2mtoken/m2mtest"
)

func cmdServe(args []string, stdout, stderr io.Writer) error {
	fs, showVersion := newFlags("serve", `Runs a local Auth0-compatible issuer (the m2mtest package) until interrupted:
RS256 JWTs, JWKS at /.well-known/jwks.json, Auth0's error answers. For local
development and integration tests of APIs that sit behind Auth0.`, stderr)
	addr := fs.String("addr", "127.0.0.1:0", "address to listen on")
	clientID := fs.String("client-id", "m2mtoken-local", "the registered client's ID")
	secret := fs.String("client-secret", "", "the registered client's secret (default: a random one, printed)")
	audience := fs.String("audience", "https://api.local/", "the API the client may get tokens for")
	scope := fs.String("scope", "read:messages", "space-separated scopes granted to the client")
	ttl := fs.Duration("ttl", 24*time.Hour, "token lifetime")
	if ok, err := parse(fs, args, showVersion, stdout); !ok {
		return err
	}
	if *secret == "" {
		b := make([]byte, 16)
		rand.Read(b)
		*secret = hex.EncodeToString(b)
	}
	s, err := m2mtest.Listen(*addr, m2mtest.Client{ID: *clientID, Secret: *secret, Audiences: []string{*audience}, Scopes: strings.Fields(*scope)})
	if err != nil {
		return err
	}
	defer s.Close()
	s.SetTokenLifetime(*ttl)
	fmt.Fprintf(stdout, `m2mtoken test issuer listening on %s
token URL: %s
JWKS URL:  %s
issuer:    %s

export M2MTOKEN_TOKEN_URL=%s
export AUTH0_CLIENT_ID=%s
export AUTH0_CLIENT_SECRET=%s
export AUTH0_AUDIENCE=%s
`, s.URL, s.TokenURL(), s.JWKSURL(), s.Issuer(), s.TokenURL(), *clientID, *secret, *audience)
	if f, ok := stdout.(*os.File); ok {
		f.Sync()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	fmt.Fprintln(stderr, "m2mtoken serve: stopping")
	return nil
}
