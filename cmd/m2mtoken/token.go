package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/m2mtoken/m2mtoken/internal/agent"
)

func cmdToken(args []string, stdout, stderr io.Writer) error {
	c := newFlags("token", `Prints an access token for scripts:

  curl -H "Authorization: Bearer $(m2mtoken token)" https://api.example.com/

Each setting is a flag or the environment variable named beside it (the
variables m2mtoken.ConfigFromEnv reads). The token is kept in a file under
the user cache directory (mode 0600, no secret in it) and reused until its
refresh window, so a job that runs every minute costs one token per token
lifetime. A token is reused only with the credential it was issued for.
While the token endpoint fails, one line per failed attempt goes to stderr
(one line in all while nothing listens at its address yet); stdout holds
the token alone.

With --dpop-key-file the token is DPoP-bound: every request needs its own proof.
--header --url URL [--method M] prints both header lines for that request:

  m2mtoken token --dpop-key-file dpop.pem --header --url https://api.example.com/x | curl -H @- https://api.example.com/x`)
	fs := c.fs
	creds := registerCredFlags(c)
	asJSON := fs.Bool("json", false, "print the token response as JSON (expires_in is the time left)")
	header := fs.Bool("header", false, "print an 'Authorization: Bearer ...' line (with a DPoP token and --url: 'Authorization: DPoP ...' and 'DPoP: ...')")
	reqURL := fs.String("url", "", "with --header: the URL of the one request the headers are for (a DPoP proof is bound to it)")
	method := fs.String("method", "GET", "with --header --url: the request's method")
	noCache := fs.Bool("no-cache", false, "do not read or write the cache file")
	cacheDir := fs.String("cache-dir", "", "cache directory (default: M2MTOKEN_CACHE_DIR, else the user cache directory's m2mtoken folder)")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	verbose := fs.Bool("verbose", false, "log each fetch, retry and cache decision to stderr")
	if ok, err := c.parse(args, stdout, stderr); !ok {
		return err
	}
	if *asJSON && *header {
		return c.usageError(stderr, "give --json or --header, not both")
	}
	if *reqURL != "" && !*header {
		return c.usageError(stderr, "--url goes with --header")
	}
	warnUnreadVars(stderr, os.Environ())
	cfg, err := creds.config()
	if err != nil {
		return err
	}
	for _, w := range creds.fileWarnings() {
		fmt.Fprintln(stderr, "m2mtoken: warning:", w)
	}
	cfg.FetchTimeout = *timeout
	creds.extra["FetchTimeout"] = "--timeout"
	if *verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	} else {
		cfg.Logger = slog.New(newWarningPrinter(stderr))
		cfg.Observer = (&attemptReporter{w: stderr}).observer()
	}
	if !*noCache {
		fc, err := agent.FileCache(*cacheDir, "--cache-dir")
		if err != nil {
			return fmt.Errorf("%w; or give --no-cache", err)
		}
		cfg.Cache = fc
	}
	src, err := creds.newSource(cfg)
	if err != nil {
		return err
	}
	defer src.Close()
	// The fetch gives up within --timeout (FetchTimeout) with an error that
	// says how often it tried; wait a little longer so that this error,
	// not a bare deadline, is what the user reads.
	ctx, cancel := context.WithTimeout(context.Background(), *timeout+time.Second)
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
