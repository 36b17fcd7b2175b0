package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/m2mtoken/m2mtoken"
)

// credFlags are the settings that say which token to get, shared by token
// and demo.
type credFlags struct {
	domain, tokenURL, clientID, clientSecret, secretFile, audience, scope, org, authMethod string
	keyFile, keyID                                                                         string
	dpopKeyFile                                                                            string
}

func (c *credFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.domain, "domain", os.Getenv("AUTH0_DOMAIN"), "Auth0 domain, such as tenant.eu.auth0.com (env AUTH0_DOMAIN)")
	fs.StringVar(&c.tokenURL, "token-url", os.Getenv("M2MTOKEN_TOKEN_URL"), "token endpoint of any OAuth 2.0 server, instead of --domain (env M2MTOKEN_TOKEN_URL)")
	fs.StringVar(&c.clientID, "client-id", os.Getenv("AUTH0_CLIENT_ID"), "client ID (env AUTH0_CLIENT_ID)")
	fs.StringVar(&c.clientSecret, "client-secret", "", "client secret; prefer env AUTH0_CLIENT_SECRET or --client-secret-file, which other users cannot see in the process list")
	fs.StringVar(&c.secretFile, "client-secret-file", "", "read the client secret from this file")
	fs.StringVar(&c.audience, "audience", os.Getenv("AUTH0_AUDIENCE"), "API identifier (env AUTH0_AUDIENCE)")
	fs.StringVar(&c.scope, "scope", os.Getenv("AUTH0_SCOPE"), "space-separated scopes (env AUTH0_SCOPE)")
	fs.StringVar(&c.org, "organization", os.Getenv("AUTH0_ORGANIZATION"), "organization ID or name (env AUTH0_ORGANIZATION)")
	fs.StringVar(&c.authMethod, "auth-method", "post", "how to send the secret: post (client_secret_post) or basic (client_secret_basic)")
	fs.StringVar(&c.keyFile, "private-key-file", os.Getenv("M2MTOKEN_PRIVATE_KEY_FILE"), "authenticate with Private Key JWT, signing with this PEM key instead of sending a secret (env M2MTOKEN_PRIVATE_KEY_FILE)")
	fs.StringVar(&c.keyID, "key-id", os.Getenv("M2MTOKEN_KEY_ID"), "the kid of --private-key-file as registered with the server (env M2MTOKEN_KEY_ID)")
	fs.StringVar(&c.dpopKeyFile, "dpop-key", os.Getenv("M2MTOKEN_DPOP_KEY_FILE"), "bind tokens to this PEM key with DPoP (a P-256 key: openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out dpop.pem) (env M2MTOKEN_DPOP_KEY_FILE)")
}

func (c *credFlags) config() (m2mtoken.Config, error) {
	secret := c.clientSecret
	if c.secretFile != "" {
		if secret != "" {
			return m2mtoken.Config{}, errors.New("give --client-secret or --client-secret-file, not both")
		}
		b, err := os.ReadFile(c.secretFile)
		if err != nil {
			return m2mtoken.Config{}, fmt.Errorf("reading --client-secret-file: %w", err)
		}
		secret = strings.TrimRight(string(b), "\r\n")
	}
	if secret == "" && c.keyFile == "" {
		secret = os.Getenv("AUTH0_CLIENT_SECRET")
	}
	cfg := m2mtoken.Config{
		Domain: c.domain, TokenURL: c.tokenURL, ClientID: c.clientID, ClientSecret: secret,
		Audience: c.audience, Scopes: strings.Fields(c.scope), Organization: c.org,
	}
	if cfg.Domain != "" && cfg.TokenURL != "" && cfg.Domain == os.Getenv("AUTH0_DOMAIN") {
		cfg.Domain = "" // a token URL wins over AUTH0_DOMAIN from the environment
	}
	if c.dpopKeyFile != "" {
		key, err := m2mtoken.LoadPrivateKey(c.dpopKeyFile)
		if err != nil {
			return cfg, fmt.Errorf("--dpop-key: %w", err)
		}
		cfg.DPoPKey = key
	}
	if c.keyFile != "" {
		key, err := m2mtoken.LoadPrivateKey(c.keyFile)
		if err != nil {
			return cfg, err
		}
		cfg.PrivateKey, cfg.KeyID, cfg.AuthMethod = key, c.keyID, m2mtoken.PrivateKeyJWT
		return cfg, nil
	}
	switch c.authMethod {
	case "post", "client_secret_post":
	case "basic", "client_secret_basic":
		cfg.AuthMethod = m2mtoken.ClientSecretBasic
	default:
		return cfg, fmt.Errorf("--auth-method %q: use post or basic", c.authMethod)
	}
	return cfg, nil
}

func cmdToken(args []string, stdout, stderr io.Writer) error {
	fs, showVersion := newFlags("token", `Prints an access token for scripts:

  curl -H "Authorization: Bearer $(m2mtoken token)" https://api.example.com/

The token is kept in a file under the user cache directory (mode 0600, no
secret in it) and reused until its refresh window, so a job that runs every
minute costs one token per token lifetime.

With --dpop-key the token is DPoP-bound: every request needs its own proof.
--header --url URL [--method M] prints both header lines for that request:

  m2mtoken token --dpop-key dpop.pem --header --url https://api.example.com/x | curl -H @- https://api.example.com/x`, stderr)
	var creds credFlags
	creds.register(fs)
	asJSON := fs.Bool("json", false, "print the token response as JSON (expires_in is the time left)")
	header := fs.Bool("header", false, "print an 'Authorization: Bearer ...' line (with a DPoP token and --url: 'Authorization: DPoP ...' and 'DPoP: ...')")
	reqURL := fs.String("url", "", "with --header: the URL of the one request the headers are for (a DPoP proof is bound to it)")
	method := fs.String("method", "GET", "with --header --url: the request's method")
	noCache := fs.Bool("no-cache", false, "do not read or write the cache file")
	cacheDir := fs.String("cache-dir", os.Getenv("M2MTOKEN_CACHE_DIR"), "cache directory (default: the user cache directory's m2mtoken folder; env M2MTOKEN_CACHE_DIR)")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	verbose := fs.Bool("verbose", false, "log each fetch, retry and cache decision to stderr")
	if ok, err := parse(fs, args, showVersion, stdout); !ok {
		return err
	}
	if *asJSON && *header {
		fmt.Fprintln(stderr, "m2mtoken token: give --json or --header, not both")
		return errUsage
	}
	if *reqURL != "" && !*header {
		fmt.Fprintln(stderr, "m2mtoken token: --url goes with --header")
		return errUsage
	}
	cfg, err := creds.config()
	if err != nil {
		return err
	}
	cfg.FetchTimeout = *timeout
	if *verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if !*noCache {
		dir := *cacheDir
		if dir == "" {
			if dir, err = m2mtoken.DefaultCacheDir(); err != nil {
				return fmt.Errorf("no cache directory (%v): give --cache-dir or --no-cache", err)
			}
		}
		cfg.Cache = m2mtoken.NewFileCache(dir)
	}
	src, err := m2mtoken.New(cfg)
	if err != nil {
		return err
	}
	defer src.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	tok, err := src.TokenContext(ctx)
	if err != nil {
		return err
	}
	dpopBound := tok.Type() == "DPoP"
	switch {
	case *header && *reqURL != "":
		h, err := src.AuthHeaders(ctx, strings.ToUpper(*method), *reqURL)
		if err != nil {
			return fmt.Errorf("--url: %w", err)
		}
		fmt.Fprintf(stdout, "Authorization: %s\n", h.Get("Authorization"))
		if p := h.Get("DPoP"); p != "" {
			fmt.Fprintf(stdout, "DPoP: %s\n", p)
		}
	case *header && dpopBound:
		return errors.New("the token is DPoP-bound: each request needs its own proof; give --url URL (and --method) for the request the headers are for")
	case *header:
		fmt.Fprintf(stdout, "Authorization: %s %s\n", tok.Type(), tok.AccessToken)
	case *asJSON:
		out := map[string]any{}
		for _, k := range []string{"scope", "id_token", "issued_token_type"} {
			if v := tok.Extra(k); v != nil {
				out[k] = v
			}
		}
		out["access_token"] = tok.AccessToken
		out["token_type"] = tok.Type()
		out["expires_in"] = int64(time.Until(tok.Expiry).Seconds())
		out["expires_at"] = tok.Expiry.UTC().Format(time.RFC3339)
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	default:
		if dpopBound {
			fmt.Fprintln(stderr, "m2mtoken token: note: the token is DPoP-bound: send it as 'Authorization: DPoP', with a proof per request (--header --url URL prints both)")
		}
		fmt.Fprintln(stdout, tok.AccessToken)
	}
	return nil
}
