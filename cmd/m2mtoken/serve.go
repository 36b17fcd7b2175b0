package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
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
development and integration tests of APIs that sit behind Auth0. It also
serves a protected API at --api-addr that checks tokens for --audience as
a strict server would (Bearer, or DPoP with its proof), and answers
"ok CLIENT TOKEN_TYPE", to try out clients, curl and m2mtoken token --header.`, stderr)
	addr := fs.String("addr", "127.0.0.1:0", "address to listen on")
	apiAddr := fs.String("api-addr", "127.0.0.1:0", "address of the protected API")
	clientID := fs.String("client-id", "m2mtoken-local", "the registered client's ID")
	secret := fs.String("client-secret", "", "the registered client's secret (default: a random one, printed)")
	audience := fs.String("audience", "https://api.local/", "the API the client may get tokens for")
	scope := fs.String("scope", "read:messages", "space-separated scopes granted to the client")
	ttl := fs.Duration("ttl", 24*time.Hour, "token lifetime")
	requireDPoP := fs.Bool("require-dpop", false, "refuse token requests without a DPoP proof (tokens are DPoP-bound whenever a proof is sent)")
	dpopNonce := fs.Bool("dpop-nonce", false, "require DPoP nonces at the token endpoint (RFC 9449 section 8)")
	apiNonce := fs.Bool("api-dpop-nonce", false, "require DPoP nonces at the protected API too (one-shot clients such as 'token --header | curl' cannot follow them)")
	if ok, err := parse(fs, args, showVersion, stdout); !ok {
		return err
	}
	if *secret == "" {
		b := make([]byte, 16)
		rand.Read(b)
		*secret = hex.EncodeToString(b)
	}
	s, err := m2mtest.Listen(*addr, m2mtest.Client{ID: *clientID, Secret: *secret, Audiences: []string{*audience}, Scopes: strings.Fields(*scope), RequireDPoP: *requireDPoP})
	if err != nil {
		return err
	}
	defer s.Close()
	s.SetTokenLifetime(*ttl)
	s.RequireDPoPNonce(*dpopNonce, *apiNonce)
	l, err := net.Listen("tcp", *apiAddr)
	if err != nil {
		return fmt.Errorf("--api-addr: %w", err)
	}
	api := &http.Server{Handler: s.Protect(*audience, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, _, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		fmt.Fprintf(w, "ok %s %s\n", *clientID, scheme)
	})), ReadHeaderTimeout: 10 * time.Second}
	go api.Serve(l)
	defer api.Close()
	dpopNote := ""
	if *requireDPoP {
		dpopNote = " (DPoP required"
		if *dpopNonce {
			dpopNote += ", with nonces"
		}
		if *apiNonce {
			dpopNote += ", and at the API"
		}
		dpopNote += ")"
	}
	fmt.Fprintf(stdout, `m2mtoken test issuer listening on %s%s
token URL: %s
JWKS URL:  %s
issuer:    %s
API URL:   http://%s/

export M2MTOKEN_TOKEN_URL=%s
export AUTH0_CLIENT_ID=%s
export AUTH0_CLIENT_SECRET=%s
export AUTH0_AUDIENCE=%s
`, s.URL, dpopNote, s.TokenURL(), s.JWKSURL(), s.Issuer(), l.Addr(), s.TokenURL(), *clientID, *secret, *audience)
	if f, ok := stdout.(*os.File); ok {
		f.Sync()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	fmt.Fprintln(stderr, "m2mtoken serve: stopping")
	return nil
}
