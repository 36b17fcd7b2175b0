package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/internal/atomicfile"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

func cmdServe(args []string, stdout, stderr io.Writer) error {
	c := newFlags("serve", `Runs a local Auth0-compatible issuer (the m2mtest package) until interrupted:
RS256 JWTs, JWKS at /.well-known/jwks.json, Auth0's error answers; and the
Auth0 quickstart's protected API, checking tokens for the --audience values:

  /api/public          no token needed
  /api/private         any valid token
  /api/private-scoped  a valid token with the read:messages scope

It also serves a protected API at --api-addr that checks tokens as a strict
server would (Bearer, or DPoP with its proof): the same /api routes, and
any other path answers "ok CLIENT TOKEN_TYPE AUDIENCE [ORGANIZATION]", to
try out clients, curl and m2mtoken token --header.

The one client may get tokens for every --audience (give it once per API,
as for a Pool of several APIs) and every --organization (an Auth0
Organization's ID or name); any other is refused as Auth0 refuses it.

It prints the environment to export (AUTH0_DOMAIN, AUTH0_CLIENT_ID, ...,
and API_URL, the protected API), the names m2mtoken token, the library's
ConfigFromEnv and the Auth0 quickstarts read. For local development and
integration tests of APIs that sit behind Auth0.

With --client-secret-file the secret is read from a file and followed, about
once a second: when the file changes (rewritten, renamed over, or swapped
as Kubernetes updates a Secret), the new secret is accepted and the
previous one refused, at once or as --rotation-grace and --rotation-delay
say, so that a rotation can be rehearsed. The exports point clients at the
same file (AUTH0_CLIENT_SECRET_FILE).

With --trust-issuer, --trust-subject and --trust-key the client also
accepts a client assertion that a platform issued instead of its secret
(workload identity federation, as Entra ID's federated credentials): a JWT
signed with one of the keys in --trust-key, whose iss and sub are exactly
--trust-issuer and --trust-subject, whose aud names --trust-audience, and
that has not expired, sent with client_assertion_type
urn:ietf:params:oauth:client-assertion-type:jwt-bearer (or jwt-spiffe for
a SPIFFE JWT-SVID, with --trust-issuer spiffe://TRUST_DOMAIN).

Plain http is accepted by m2mtoken only on loopback. For containers and
other machines use --tls: it serves https with a certificate from a CA made
for this run, and writes the CA certificate to --ca-out for clients to
trust (curl --cacert, SSL_CERT_FILE, m2mtoken token --ca-file).

With --tls and --client-cert-auth the client authenticates with a TLS
client certificate instead of a secret (RFC 8705): tls_client_auth, a
certificate that this run's CA issues (to --client-cert-out, its key to
--client-key-out) with the subject CN=CLIENT_ID, which is registered; or
self_signed_tls_client_auth, a self-signed certificate that serve makes
the same way, or yours in --client-cert, registered by its content. The
token request sends client_id and no secret, over a connection with the
certificate. Tokens are then bound to the certificate (cnf.x5t#S256), and
the API asks for client certificates and accepts such a token only with
its own: --cert-bound-tokens=false issues unbound ones, and
--cert-bound-tokens binds a secret's tokens (FAPI) to the certificate of
the token request.`)
	fs := c.fs
	addr := fs.String("addr", "127.0.0.1:0", "address to listen on, such as 0.0.0.0:8443 for other containers")
	apiAddr := fs.String("api-addr", "127.0.0.1:0", "address of the protected API")
	useTLS := fs.Bool("tls", false, "serve https with a certificate from a CA generated for this run")
	caOut := fs.String("ca-out", "", "with --tls, write the CA certificate (PEM) to this file (default: a temporary file, removed at exit)")
	hostname := fs.String("hostname", "", "the host name clients reach the server by, used in its URLs, issuer and certificate (default: the address, or the machine's name when it listens on all addresses with --tls)")
	clientID := fs.String("client-id", "m2mtoken-local", "the registered client's ID")
	secret := fs.String("client-secret", "", "the registered client's secret (default: a random one, printed)")
	secretFile := fs.String("client-secret-file", "", "a file holding the client's secret (a final newline dropped), followed: when it changes, the new secret replaces the old")
	grace := fs.Duration("rotation-grace", 0, "with --client-secret-file, how long the previous secret is still accepted after the file changes (default: refused at once, as Auth0 rotates)")
	delay := fs.Duration("rotation-delay", 0, "with --client-secret-file, how long after the file changes the new secret is first accepted (Auth0: up to 30s)")
	trustIssuer := fs.String("trust-issuer", "", "accept client assertions from this platform's issuer (iss), such as a Kubernetes service-account issuer, or spiffe://TRUST_DOMAIN for JWT-SVIDs")
	trustSubject := fs.String("trust-subject", "", "the subject (sub) the --trust-issuer's assertions must name, such as system:serviceaccount:NAMESPACE:NAME")
	trustKey := fs.String("trust-key", "", "a file of the --trust-issuer's public keys: PEM (PUBLIC KEY or CERTIFICATE) or a JWKS; followed")
	trustAudience := fs.String("trust-audience", m2mtest.DefaultAssertionAudience, "the audience (aud) the --trust-issuer's assertions must name")
	var audiences, orgs multiFlag
	fs.Var(&audiences, "audience", "an API the client may get tokens for, and /api/private accepts (repeatable; the first is exported as AUTH0_AUDIENCE; default https://api.local/)")
	fs.Var(&orgs, "organization", "an Auth0 Organization (ID or name) the client may get tokens for (repeatable; default none)")
	scope := fs.String("scope", "read:messages", "space-separated scopes granted to the client")
	ttl := fs.Duration("ttl", 24*time.Hour, "token lifetime")
	requireDPoP := fs.Bool("require-dpop", false, "refuse token requests without a DPoP proof (tokens are DPoP-bound whenever a proof is sent)")
	dpopNonce := fs.Bool("dpop-nonce", false, "require DPoP nonces at the token endpoint (RFC 9449 section 8)")
	apiNonce := fs.Bool("api-dpop-nonce", false, "require DPoP nonces at the protected API too (one-shot clients such as 'token --header | curl' cannot follow them)")
	certs := addCertFlags(fs)
	if ok, err := c.parse(args, stdout, stderr); !ok {
		return err
	}
	if *caOut != "" && !*useTLS {
		return c.usageError(stderr, "--ca-out needs --tls")
	}
	if len(audiences) == 0 {
		audiences = multiFlag{"https://api.local/"}
	}
	for _, a := range slices.Concat(audiences, orgs) {
		if strings.TrimSpace(a) == "" {
			return c.usageError(stderr, "--audience and --organization need a value")
		}
	}
	trustSet := false
	fs.Visit(func(f *flag.Flag) { trustSet = trustSet || strings.HasPrefix(f.Name, "trust-") })
	if msg := certs.check(fs, *useTLS, *secret != "" || *secretFile != ""); msg != "" {
		return c.usageError(stderr, "%s", msg)
	}
	switch {
	case *secret != "" && *secretFile != "":
		return c.usageError(stderr, "--client-secret and --client-secret-file are both set: give only one")
	case (*grace != 0 || *delay != 0) && *secretFile == "":
		return c.usageError(stderr, "--rotation-grace and --rotation-delay need --client-secret-file, the secret that rotates")
	case *grace < 0 || *delay < 0:
		return c.usageError(stderr, "--rotation-grace and --rotation-delay cannot be negative")
	case trustSet && (*trustIssuer == "" || *trustSubject == "" || *trustKey == ""):
		var missing []string
		for _, f := range []struct{ name, v string }{{"--trust-issuer", *trustIssuer}, {"--trust-subject", *trustSubject}, {"--trust-key", *trustKey}} {
			if f.v == "" {
				missing = append(missing, f.name)
			}
		}
		return c.usageError(stderr, "--trust-issuer, --trust-subject and --trust-key go together: %s missing", strings.Join(missing, " and "))
	}
	logs := &serveLog{w: stderr}
	ctx, stopFollowing := context.WithCancel(context.Background())
	defer stopFollowing()
	var secretFollow, keysFollow *followed
	var err error
	if *secretFile != "" {
		if secretFollow, err = startFollowing("--client-secret-file", *secretFile, checkSecretFile); err != nil {
			return err
		}
		*secret = secretOf(secretFollow.content)
	}
	var trustKeys []m2mtest.Key
	if *trustKey != "" {
		if keysFollow, err = startFollowing("--trust-key", *trustKey, func(b []byte) error { _, err := m2mtest.ParseKeys(b); return err }); err != nil {
			return err
		}
		trustKeys, _ = m2mtest.ParseKeys(keysFollow.content)
	}
	if *secret == "" && *certs.method == "" {
		b := make([]byte, 16)
		rand.Read(b)
		*secret = hex.EncodeToString(b)
	}
	host, port, err := net.SplitHostPort(*addr)
	if err != nil {
		return c.usageError(stderr, "--addr %q: %v (want HOST:PORT, such as 127.0.0.1:8089 or 0.0.0.0:8443)", *addr, err)
	}
	ip := net.ParseIP(host)
	everywhere := host == "" || ip != nil && ip.IsUnspecified()
	lc := m2mtest.ListenConfig{Addr: *addr, Host: *hostname}
	var caFile string
	var clientCerts *clientCerts
	if *useTLS {
		if lc.Host == "" && everywhere {
			if lc.Host, err = os.Hostname(); err != nil || lc.Host == "" {
				lc.Host = "localhost"
			}
		}
		ca, err := newLocalCA()
		if err != nil {
			return err
		}
		names, ips := certNames(host, lc.Host, everywhere)
		if apiHost, _, err := net.SplitHostPort(*apiAddr); err == nil {
			apiIP := net.ParseIP(apiHost)
			n, i := certNames(apiHost, "", apiHost == "" || apiIP != nil && apiIP.IsUnspecified())
			names, ips = append(names, n...), append(ips, i...)
		}
		cert, err := ca.serverCert(names, ips)
		if err != nil {
			return err
		}
		lc.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if certs.enabled() {
			if clientCerts, err = setupClientCerts(certs, ca, *clientID, &lc); err != nil {
				return err
			}
			defer clientCerts.cleanup()
		}
		caFile = *caOut
		if caFile == "" {
			f, err := os.CreateTemp("", "m2mtoken-serve-ca-*.pem")
			if err != nil {
				return err
			}
			f.Close()
			caFile = f.Name()
			defer os.Remove(caFile)
		}
		if caFile, err = filepath.Abs(caFile); err != nil {
			return err
		}
		// A new file renamed into place: a symlink planted at the path is
		// replaced, never followed.
		if err := atomicfile.WriteMode(caFile, "."+filepath.Base(caFile)+".tmp-*", ca.PEM(), 0o644, -1); err != nil {
			return fmt.Errorf("--ca-out: %w", err)
		}
	}
	client := m2mtest.Client{ID: *clientID, Secret: *secret, Audiences: audiences, Organizations: orgs,
		Scopes: strings.Fields(*scope), RequireDPoP: *requireDPoP}
	clientCerts.client(&client)
	lc.ErrorLog = logs.serverLog(caFile)
	s, err := lc.Listen(client)
	if err != nil {
		return fmt.Errorf("--addr %s: %w", *addr, err)
	}
	defer s.Close()
	if clientCerts != nil {
		if err := clientCerts.register(s, *clientID); err != nil {
			return fmt.Errorf("--client-cert: %w", err)
		}
	}
	s.SetTokenLifetime(*ttl)
	trust := m2mtest.TrustedIssuer{Issuer: *trustIssuer, Subject: *trustSubject, Audience: *trustAudience, Keys: trustKeys}
	if *trustKey != "" {
		if err := s.Trust(*clientID, trust); err != nil {
			return c.usageError(stderr, "--trust-issuer %s and --trust-subject %s: %s", *trustIssuer, *trustSubject, strings.TrimPrefix(err.Error(), "m2mtest: Trust: "))
		}
	}
	s.RequireDPoPNonce(*dpopNonce, *apiNonce)
	serveQuickstartAPI(s.Handle, s, audiences)

	// The protected API on an address of its own: the quickstart's routes,
	// and "ok CLIENT TOKEN_TYPE AUDIENCE [ORGANIZATION]" on any other path.
	l, err := net.Listen("tcp", *apiAddr)
	if err != nil {
		return fmt.Errorf("--api-addr: %w", err)
	}
	apiMux := http.NewServeMux()
	apiMux.Handle("/", protectAny(s, audiences, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		claims := tokenClaims(tok) // verified by protectAny
		line := fmt.Sprintf("ok %s %s %s", *clientID, scheme, claims.Aud)
		if claims.Org != "" {
			line += " " + claims.Org
		}
		fmt.Fprintln(w, line)
	})))
	serveQuickstartAPI(apiMux.Handle, s, audiences)
	api := &http.Server{Handler: apiMux, ReadHeaderTimeout: 10 * time.Second, TLSConfig: lc.TLS, ErrorLog: lc.ErrorLog}
	apiURL := "http://" + apiHostPort(l.Addr(), "")
	if lc.TLS != nil {
		go api.ServeTLS(l, "", "")
		apiURL = "https://" + apiHostPort(l.Addr(), lc.Host)
	} else {
		go api.Serve(l)
	}
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

	var b strings.Builder
	scheme := "http"
	if *useTLS {
		scheme = "https"
	}
	if u, err := url.Parse(s.URL); err == nil {
		port = u.Port()
	}
	fmt.Fprintf(&b, "m2mtoken test issuer listening on %s (%s)%s\n", net.JoinHostPort(host, port), scheme, dpopNote)
	fmt.Fprintf(&b, "token URL: %s\nJWKS URL:  %s\nissuer:    %s\n", s.TokenURL(), s.JWKSURL(), s.Issuer())
	fmt.Fprintf(&b, "API URL:   %s/\n", apiURL)
	scopes := "no scopes"
	if sc := strings.Fields(*scope); len(sc) > 0 {
		scopes = "the scopes " + strings.Join(sc, " ")
	}
	fmt.Fprintf(&b, "client:    %s, with %s\n", *clientID, scopes)
	clientCerts.lines(&b)
	if secretFollow != nil {
		fmt.Fprintf(&b, "secret:    %s (%s), followed: on a change, %s\n", secretFollow.file.Path(), m2mtoken.Fingerprint(*secret), rotationWords(*grace, *delay))
	}
	if keysFollow != nil {
		fmt.Fprintf(&b, "trust:     client assertions (jwt-bearer, or jwt-spiffe) from issuer %s for subject %s, aud %s,\n"+
			"           signed with %s from %s (followed)\n", trust.Issuer, trust.Subject, trust.Audience, describeKeys(trustKeys), keysFollow.file.Path())
	}
	fmt.Fprintf(&b, "audiences: %s (the default, AUTH0_AUDIENCE)", audiences[0])
	for _, a := range audiences[1:] {
		fmt.Fprintf(&b, ", %s", a)
	}
	b.WriteString("; any other is refused\n")
	if len(orgs) == 0 {
		b.WriteString("orgs:      none; a token request for an organization is refused (--organization adds one)\n")
	} else {
		fmt.Fprintf(&b, "orgs:      %s; any other is refused\n", strings.Join(orgs, ", "))
	}
	fmt.Fprintf(&b, "routes:    /api/public, /api/private, /api/private-scoped (needs read:messages) for these audiences,\n"+
		"           at the API URL and at %s; other paths of the API URL answer \"ok CLIENT TOKEN_TYPE AUDIENCE [ORGANIZATION]\"\n", s.URL)
	domain := strings.TrimPrefix(s.URL, "https://")
	if *useTLS {
		fmt.Fprintf(&b, "CA:        %s (trust it with curl --cacert FILE, SSL_CERT_FILE=FILE, m2mtoken token --ca-file FILE)\n", caFile)
	} else if everywhere {
		fmt.Fprintf(&b, "note:      m2mtoken and the Auth0 SDKs send secrets over plain http only to loopback; use --tls for other machines and containers\n")
	}
	fmt.Fprintf(&b, "\nexport AUTH0_DOMAIN=%s\nexport AUTH0_CLIENT_ID=%s\n", shellQuote(domain), shellQuote(*clientID))
	switch {
	case secretFollow != nil:
		fmt.Fprintf(&b, "export AUTH0_CLIENT_SECRET_FILE=%s\n", shellQuote(secretFollow.file.Path()))
	case *secret != "":
		fmt.Fprintf(&b, "export AUTH0_CLIENT_SECRET=%s\n", shellQuote(*secret))
	}
	if clientCerts != nil {
		clientCerts.exports(&b)
	}
	fmt.Fprintf(&b, "export AUTH0_AUDIENCE=%s\nexport API_URL=%s\n", shellQuote(audiences[0]), shellQuote(apiURL+"/"))
	if *useTLS {
		fmt.Fprintf(&b, "export M2MTOKEN_CA_FILE=%s\n", shellQuote(caFile))
		fmt.Fprintf(&b, "# SSL_CERT_FILE (Python, Go, OpenSSL) and CURL_CA_BUNDLE (curl) make this shell trust this CA only;\n# leave them out to keep the system's CAs\n")
		fmt.Fprintf(&b, "export SSL_CERT_FILE=%s\nexport CURL_CA_BUNDLE=%s\n", shellQuote(caFile), shellQuote(caFile))
	}
	fmt.Fprintf(&b, "# serving until interrupted\n")
	io.WriteString(stdout, b.String())
	if f, ok := stdout.(*os.File); ok {
		f.Sync()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	var following sync.WaitGroup
	var certFollow *followed
	if clientCerts != nil && clientCerts.follow != nil {
		certFollow = clientCerts.follow
		certFollow.apply = func(content []byte) { clientCerts.reregister(s, *clientID, content, logs) }
	}
	if secretFollow != nil || keysFollow != nil || certFollow != nil {
		current := *secret
		if secretFollow != nil {
			secretFollow.apply = func(content []byte) {
				next := secretOf(content)
				if next == current {
					return
				}
				if err := s.RotateSecret(*clientID, next, m2mtest.Rotation{OldFor: *grace, NewAfter: *delay}); err != nil {
					logs.printf("warning: --client-secret-file %s: %v", secretFollow.file.Path(), err)
					return
				}
				logs.printf("--client-secret-file %s changed: %s", secretFollow.file.Path(), rotatedWords(current, next, *grace, *delay))
				current = next
			}
		}
		if keysFollow != nil {
			keysFollow.apply = func(content []byte) {
				trust.Keys, _ = m2mtest.ParseKeys(content)
				if err := s.Trust(*clientID, trust); err != nil {
					logs.printf("warning: --trust-key %s: %v", keysFollow.file.Path(), err)
					return
				}
				logs.printf("--trust-key %s changed: %s trusted for issuer %s", keysFollow.file.Path(), describeKeys(trust.Keys), trust.Issuer)
			}
		}
		following.Go(func() {
			tick := time.NewTicker(followEvery)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				for _, f := range []*followed{secretFollow, keysFollow, certFollow} {
					if f != nil {
						f.poll(ctx, logs)
					}
				}
			}
		})
	}
	<-sig
	stopFollowing()
	following.Wait()
	logs.printf("stopping")
	return nil
}

// apiHostPort is the address of the API's listener as clients reach it: an
// unspecified address becomes 127.0.0.1, or host when given.
func apiHostPort(a net.Addr, host string) string {
	h, port, _ := net.SplitHostPort(a.String())
	if ip := net.ParseIP(h); ip != nil && ip.IsUnspecified() {
		h = "127.0.0.1"
		if host != "" {
			h = host
		}
	}
	return net.JoinHostPort(h, port)
}

// shellQuote quotes v for a POSIX shell when it needs it.
func shellQuote(v string) string {
	safe := v != ""
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:@%+=,", r)) {
			safe = false
			break
		}
	}
	if safe {
		return v
	}
	return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
}
