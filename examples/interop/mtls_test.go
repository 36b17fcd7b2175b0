package main

// RFC 8705 against oidc-provider: mutual TLS client authentication
// (tls_client_auth, self_signed_tls_client_auth) and certificate-bound
// access tokens, presented to an API that checks the binding.

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/m2mtoken/m2mtoken"
)

// tlsClientSubject is the subject registered for interop-tls
// (tls_client_auth_subject_dn).
var tlsClientSubject = pkix.Name{CommonName: "interop-tls", Organization: []string{"m2mtoken interop"}}

// mtlsProvider is oidc-provider over https, asking every client for a
// certificate: interop-tls takes one that clientCA issued for
// tlsClientSubject, interop-self-signed one of selfSigned.
type mtlsProvider struct {
	*provider
	serverCA   *certAuthority
	caFile     string // serverCA's certificate, the CAFile of the sources
	clientCA   *certAuthority
	selfSigned []keyPair
}

func startMTLS(t *testing.T, ttl time.Duration, env ...string) *mtlsProvider {
	t.Helper()
	dir := t.TempDir()
	m := &mtlsProvider{serverCA: newCA(t, "interop server CA"), clientCA: newCA(t, "interop client CA")}
	m.caFile = m.serverCA.file(t, dir, "server-ca.pem")
	serverCert, serverKey := m.serverCA.issue(t, pkix.Name{CommonName: "127.0.0.1"}, true).files(t)
	var registered strings.Builder
	for i := range 2 {
		p := (*certAuthority)(nil).issue(t, pkix.Name{CommonName: fmt.Sprintf("interop-self-signed %d", i)}, false)
		m.selfSigned = append(m.selfSigned, p)
		registered.WriteString(p.cert)
	}
	selfSignedFile := filepath.Join(dir, "self-signed.pem")
	writeFile(t, selfSignedFile, registered.String())
	m.provider = startOrSkip(t, ttl, append(env,
		"TLS_CERT="+serverCert, "TLS_KEY="+serverKey,
		"CLIENT_CA="+m.clientCA.file(t, dir, "client-ca.pem"),
		"TLS_CLIENT_DN="+tlsClientSubject.String(),
		"SELF_SIGNED_CERTS="+selfSignedFile)...)
	return m
}

// issuer is the provider's issuer, its token endpoint without /token.
func (m *mtlsProvider) issuer() string { return strings.TrimSuffix(m.tokenURL, "/token") }

// pair returns a new certificate that authenticates the client of method:
// one clientCA issued, or the i-th registered self-signed one.
func (m *mtlsProvider) pair(t *testing.T, method m2mtoken.AuthMethod, i int) keyPair {
	if method == m2mtoken.TLSClientAuth {
		return m.clientCA.issue(t, tlsClientSubject, false)
	}
	return m.selfSigned[i]
}

// config is the configuration a user writes for one of the mTLS clients:
// the certificate's files, the server's CA, no secret; AuthMethod only for
// self_signed_tls_client_auth (a certificate alone means tls_client_auth).
func (m *mtlsProvider) config(method m2mtoken.AuthMethod, certFile, keyFile string) m2mtoken.Config {
	cfg := m2mtoken.Config{TokenURL: m.tokenURL, ClientID: "interop-tls",
		ClientCertFile: certFile, ClientKeyFile: keyFile, CAFile: m.caFile,
		Scopes: []string{"read:messages"}, EndpointParams: map[string][]string{"resource": {resource}}}
	if method == m2mtoken.SelfSignedTLSClientAuth {
		cfg.ClientID, cfg.AuthMethod = "interop-self-signed", method
	}
	return cfg
}

// roots trusts the servers' CA.
func (m *mtlsProvider) roots() *x509.CertPool {
	roots := x509.NewCertPool()
	roots.AddCert(m.serverCA.cert)
	return roots
}

var mtlsMethods = []m2mtoken.AuthMethod{m2mtoken.TLSClientAuth, m2mtoken.SelfSignedTLSClientAuth}

// newSource is m2mtoken.New, closed when the test ends.
func newSource(t *testing.T, cfg m2mtoken.Config) *m2mtoken.TokenSource {
	t.Helper()
	src, err := m2mtoken.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

// boundTo is the cnf.x5t#S256 of a JWT access token.
func boundTo(t *testing.T, tok string) string {
	t.Helper()
	cnf, _ := claims(t, tok)["cnf"].(map[string]any)
	x5t, _ := cnf["x5t#S256"].(string)
	return x5t
}

// TestInteropMTLS: with each method, a source given only the certificate's
// files (and the server's CA) gets a token from oidc-provider, bound to
// that certificate; Client() presents it to the API, which accepts the
// token; the same token without its certificate, or with another, is
// refused.
func TestInteropMTLS(t *testing.T) {
	m := startMTLS(t, time.Minute)
	api := newBoundAPI(t, m)
	for _, method := range mtlsMethods {
		t.Run(method.String(), func(t *testing.T) {
			pair := m.pair(t, method, 0)
			certFile, keyFile := pair.files(t)
			src := newSource(t, m.config(method, certFile, keyFile))
			tok, err := src.Token()
			if err != nil {
				t.Fatal(err)
			}
			cl := claims(t, tok.AccessToken)
			t.Logf("%s: token request: %s token for %v, client_id %v, %v left", method, tok.Type(), cl["aud"], cl["client_id"], time.Until(tok.Expiry).Round(time.Second))
			t.Logf("%s: cnf.x5t#S256 %s, the certificate's SHA-256 %s", method, boundTo(t, tok.AccessToken), pair.thumb())
			if tok.Type() != "Bearer" || boundTo(t, tok.AccessToken) != pair.thumb() {
				t.Fatalf("token type %q bound to %q, want a Bearer token bound to the certificate", tok.Type(), boundTo(t, tok.AccessToken))
			}

			status, body := api.call(t, src.Client(), "")
			t.Logf("%s: API through Client(), with the certificate: %d %s", method, status, body)
			if status != 200 {
				t.Fatal("the API refused the token with its certificate")
			}
			other := (*certAuthority)(nil).issue(t, pkix.Name{CommonName: "someone else"}, false)
			for _, c := range []struct {
				name string
				pair *keyPair
			}{{"without a certificate", nil}, {"with another certificate", &other}} {
				status, body := api.call(t, presenting(t, m, c.pair), tok.AccessToken)
				t.Logf("%s: API, the same token %s: %d %s", method, c.name, status, body)
				if status != 401 {
					t.Fatalf("the API took the token %s", c.name)
				}
			}
		})
	}
}

// TestInteropMTLSTokenURL: token requests go to MTLSTokenURL, the alias
// Auth0 takes certificates at; oidc-provider takes them at its token
// endpoint, given here as the alias, with a TokenURL that does not resolve.
func TestInteropMTLSTokenURL(t *testing.T) {
	m := startMTLS(t, time.Minute)
	pair := m.pair(t, m2mtoken.TLSClientAuth, 0)
	certFile, keyFile := pair.files(t)
	cfg := m.config(m2mtoken.TLSClientAuth, certFile, keyFile)
	cfg.TokenURL, cfg.MTLSTokenURL = "https://auth.invalid/token", m.tokenURL
	tok, err := newSource(t, cfg).Token()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("TokenURL %s, MTLSTokenURL %s: a token bound to %s", cfg.TokenURL, cfg.MTLSTokenURL, boundTo(t, tok.AccessToken))
	if boundTo(t, tok.AccessToken) != pair.thumb() {
		t.Fatal("the token is not bound to the certificate")
	}
}

// TestInteropMTLSRefused: oidc-provider refuses a certificate that does
// not authenticate the client; what m2mtoken says about it.
func TestInteropMTLSRefused(t *testing.T) {
	m := startMTLS(t, time.Minute)
	for _, c := range []struct {
		name   string
		method m2mtoken.AuthMethod
		pair   keyPair
	}{
		{"tls_client_auth, a self-signed certificate", m2mtoken.TLSClientAuth, (*certAuthority)(nil).issue(t, tlsClientSubject, false)},
		{"tls_client_auth, another subject", m2mtoken.TLSClientAuth, m.clientCA.issue(t, pkix.Name{CommonName: "someone else"}, false)},
		{"self_signed_tls_client_auth, a certificate not registered", m2mtoken.SelfSignedTLSClientAuth, (*certAuthority)(nil).issue(t, pkix.Name{CommonName: "interop-self-signed"}, false)},
	} {
		certFile, keyFile := c.pair.files(t)
		src, err := m2mtoken.New(m.config(c.method, certFile, keyFile))
		if err != nil {
			t.Fatal(err)
		}
		_, err = src.Token()
		src.Close()
		var te *m2mtoken.TokenError
		if !errors.As(err, &te) || te.Code != "invalid_client" || te.Temporary {
			t.Fatalf("%s: %v", c.name, err)
		}
		if strings.Contains(te.Hint, "secret") || !strings.Contains(te.Hint, "Config.ClientCertFile") {
			t.Errorf("%s: the hint does not point at the certificate: %s", c.name, te.Hint)
		}
		t.Logf("%s: %v", c.name, err)
	}
}

// TestInteropMTLSRotation: callers call the API through Client() while
// the certificate is renewed on disk (the certificate's file replaced,
// then the key's: for a moment they do not match); with 4-second tokens,
// the next refresh reads the files, and the calls go on with a token
// bound to the new certificate, over connections that present it. No
// call fails, and the API refuses none, with JWT access tokens and with
// opaque ones, whose binding the API learns by introspection and the
// client cannot read.
func TestInteropMTLSRotation(t *testing.T) {
	for _, format := range []string{"jwt", "opaque"} {
		m := startMTLS(t, 4*time.Second, "ACCESS_TOKEN_FORMAT="+format)
		for _, method := range mtlsMethods {
			t.Run(format+"/"+method.String(), func(t *testing.T) {
				rotateWhileCalling(t, m, method)
			})
		}
	}
}

func rotateWhileCalling(t *testing.T, m *mtlsProvider, method m2mtoken.AuthMethod) {
	api := newBoundAPI(t, m)
	name := strings.TrimPrefix(t.Name(), "TestInteropMTLSRotation/")
	old, renewed := m.pair(t, method, 0), m.pair(t, method, 1)
	certFile, keyFile := old.files(t)
	cfg := m.config(method, certFile, keyFile)
	// oidc-provider's exp is in whole seconds (it rounds iat down), and a
	// client counts expires_in from the answer's arrival: a token may end
	// up to a second before the client reckons. A 4-second token's default
	// window (a fifth of it) would leave the API, which checks exp to the
	// second, refusing it; 2 seconds refresh it with a second to spare.
	cfg.RefreshWindow = 2 * time.Second
	src := newSource(t, cfg)
	hc := src.Client()
	var calls, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				calls.Add(1)
				resp, err := hc.Get(api.URL)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err == nil && resp.StatusCode != 200 {
					err = errors.New(resp.Status)
				}
				if err != nil {
					failed.Add(1)
					t.Logf("a call failed: %v", err)
				}
				time.Sleep(5 * time.Millisecond) // callers, not a flood
			}
		})
	}
	stopCallers := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopCallers()
	waitFor(t, "50 calls with the first certificate", func() bool { return api.accepted(old.thumb()) >= 50 })
	writeFile(t, certFile, renewed.cert)
	writeFile(t, keyFile, renewed.key)
	rotated := time.Now()
	waitFor(t, "a call with the renewed certificate", func() bool { return api.accepted(renewed.thumb()) > 0 })
	took := time.Since(rotated)
	waitFor(t, "50 calls with the renewed certificate", func() bool { return api.accepted(renewed.thumb()) >= 50 })
	stopCallers()

	tok, err := src.Token()
	if err != nil {
		t.Fatal(err)
	}
	st := src.Stats()
	t.Logf("%s: %d calls through the rotation, %d failed; the API accepted %d with the first certificate and %d with the renewed one (the first %v after the files changed), refused %d; %d token requests, %d failed",
		name, calls.Load(), failed.Load(), api.accepted(old.thumb()), api.accepted(renewed.thumb()), took.Round(10*time.Millisecond), len(api.refusals()), st.TokenRequests, st.Failures)
	t.Logf("%s: the token in use is bound to %s, the renewed certificate is %s", name, api.binding(t, tok.AccessToken), renewed.thumb())
	if failed.Load() != 0 {
		t.Errorf("%d of %d calls failed across the rotation", failed.Load(), calls.Load())
	}
	if r := api.refusals(); len(r) != 0 {
		t.Errorf("the API refused %d calls: %q", len(r), r)
	}
	if api.binding(t, tok.AccessToken) != renewed.thumb() {
		t.Error("after the rotation the token is not bound to the renewed certificate")
	}
}

// TestInteropMTLSSharedCache: two sources of one client with different
// certificates, sharing a MemoryCache, get a token each, bound to its own
// certificate, which the API accepts from it; a third with the first one's
// certificate takes the first one's token from the cache.
func TestInteropMTLSSharedCache(t *testing.T) {
	m := startMTLS(t, time.Minute)
	api := newBoundAPI(t, m)
	for _, method := range mtlsMethods {
		t.Run(method.String(), func(t *testing.T) {
			cache := m2mtoken.NewMemoryCache()
			first, second := m.pair(t, method, 0), m.pair(t, method, 1)
			source := func(p keyPair) *m2mtoken.TokenSource {
				certFile, keyFile := p.files(t)
				cfg := m.config(method, certFile, keyFile)
				cfg.Cache = cache
				return newSource(t, cfg)
			}
			a, b, same := source(first), source(second), source(first)
			var toks []string
			for _, c := range []struct {
				name string
				src  *m2mtoken.TokenSource
				pair keyPair
			}{{"first", a, first}, {"second", b, second}, {"third, the first's certificate", same, first}} {
				tok, err := c.src.Token()
				if err != nil {
					t.Fatal(err)
				}
				toks = append(toks, tok.AccessToken)
				status, _ := api.call(t, c.src.Client(), "")
				t.Logf("%s: %s source: token bound to %s (its certificate %s), %d token requests, API %d",
					method, c.name, boundTo(t, tok.AccessToken), c.pair.thumb(), c.src.Stats().TokenRequests, status)
				if boundTo(t, tok.AccessToken) != c.pair.thumb() || status != 200 {
					t.Errorf("%s source: a token bound to another certificate, or refused (%d)", c.name, status)
				}
			}
			if toks[0] == toks[1] || toks[0] != toks[2] || same.Stats().TokenRequests != 0 {
				t.Error("the sources with different certificates shared a token, or those with the same did not")
			}
			if a.CacheKey() == b.CacheKey() || a.CacheKey() != same.CacheKey() {
				t.Error("the cache key does not follow the certificate")
			}
		})
	}
}

// waitFor polls cond for up to 30 s: the provider's and the API's answers
// come in real time.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for stop := time.Now().Add(30 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(stop) {
			t.Fatalf("no %s within 30 s", what)
		}
	}
}
