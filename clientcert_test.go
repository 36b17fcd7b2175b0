package m2mtoken

// Tests of the client certificate (clientcert.go): mTLS client
// authentication, certificate-bound tokens at the API, a certificate
// rotated on disk while callers run, and the cache key of a certificate.
// It runs to about 500 lines because every test goes through the one
// server here (mtlsServer: a token endpoint that binds, JWT or opaque
// tokens, and an API that checks the binding), kept beside them.

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/m2mtoken/m2mtoken/internal/clock"
	"github.com/m2mtoken/m2mtoken/internal/follow/followtest"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// testCA issues certificates for the tests: the server's, and clients'.
type testCA struct{ *m2mtest.CA }

func newTestCA(t testing.TB) *testCA { return &testCA{m2mtest.NewCA("m2mtoken test CA")} }

// issue returns a certificate for cn, signed by the CA (or by itself if
// ca is nil), valid from notBefore to notAfter, as PEM, and its key.
func (ca *testCA) issue(t testing.TB, cn string, notBefore, notAfter time.Time, server bool) (certPEM, keyPEM string) {
	t.Helper()
	tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: cn}, NotBefore: notBefore, NotAfter: notAfter}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = ipLoopback()
	}
	var cert tls.Certificate
	var err error
	if ca == nil {
		cert, err = m2mtest.SelfSigned(tmpl)
	} else {
		cert, err = ca.Issue(tmpl)
	}
	if err != nil {
		t.Fatal(err)
	}
	c, k, err := m2mtest.CertificatePEM(cert)
	if err != nil {
		t.Fatal(err)
	}
	return string(c), string(k)
}

// thumbOf is the RFC 8705 thumbprint of a PEM certificate.
func thumbOf(t testing.TB, certPEM string) string {
	t.Helper()
	b, _ := pem.Decode([]byte(certPEM))
	sum := sha256.Sum256(b.Bytes)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// mtlsServer is a token endpoint and an API over one TLS server that asks
// every client for a certificate: the token endpoint authenticates the
// client by it (the CA's, or the one self-signed certificate registered)
// and binds the token to it; the API accepts a token only over a
// connection that presents its certificate.
type mtlsServer struct {
	*httptest.Server
	caFile   string
	ca       *testCA
	selfSign atomic.Value // string: the thumbprint of the registered self-signed certificate
	requests atomic.Int64
	forms    chan string
	apiCalls atomic.Int64
	// apiRefused counts tokens the API refused: presented without the
	// certificate they are bound to.
	apiRefused atomic.Int64
	// opaque has the server issue opaque tokens, whose binding only it
	// knows (as an API learns it by introspection): token -> thumbprint.
	opaque atomic.Bool
	bound  sync.Map
	// unbound has the server issue JWTs that name no certificate.
	unbound atomic.Bool
	// dpopTyped has the server type its tokens DPoP (as Auth0 documents
	// for mTLS-bound ones), and withJKT name a DPoP key in cnf too.
	dpopTyped, withJKT atomic.Bool
}

func newMTLSServer(t testing.TB) *mtlsServer {
	t.Helper()
	ca := newTestCA(t)
	m := &mtlsServer{ca: ca, forms: make(chan string, 100)}
	m.selfSign.Store("")
	mux := http.NewServeMux()
	mux.HandleFunc("/oauth/token", m.token)
	mux.HandleFunc("/api", m.api)
	m.Server = httptest.NewUnstartedServer(mux)
	certPEM, keyPEM := ca.issue(t, "localhost", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), true)
	pair, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		t.Fatal(err)
	}
	m.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAnyClientCert}
	m.StartTLS()
	t.Cleanup(m.Close)
	m.caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(m.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return m
}

// trusted reports whether the peer certificate authenticates the client:
// one the CA issued (tls_client_auth), or the registered self-signed one.
func (m *mtlsServer) trusted(r *http.Request) (string, bool) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return "", false
	}
	leaf := r.TLS.PeerCertificates[0]
	sum := sha256.Sum256(leaf.Raw)
	thumb := base64.RawURLEncoding.EncodeToString(sum[:])
	if thumb == m.selfSign.Load().(string) {
		return thumb, true
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: m.ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return thumb, err == nil
}

func (m *mtlsServer) token(w http.ResponseWriter, r *http.Request) {
	m.requests.Add(1)
	r.ParseForm()
	select {
	case m.forms <- r.PostForm.Encode():
	default:
	}
	thumb, ok := m.trusted(r)
	if !ok || r.PostForm.Get("client_id") != "svc" {
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":"invalid_client","error_description":"no trusted client certificate"}`)
		return
	}
	c := map[string]any{"sub": "svc@clients", "n": m.requests.Load(), "cnf": map[string]string{"x5t#S256": thumb}}
	if m.unbound.Load() {
		delete(c, "cnf")
	}
	if m.withJKT.Load() {
		c["cnf"] = map[string]string{"x5t#S256": thumb, "jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}
	}
	typ := "Bearer"
	if m.dpopTyped.Load() {
		typ = "DPoP"
	}
	claims, _ := json.Marshal(c)
	tok := "eyJhbGciOiJub25lIn0." + base64.RawURLEncoding.EncodeToString(claims) + ".c2ln"
	if m.opaque.Load() {
		tok = fmt.Sprintf("opaque-%d", m.requests.Load())
		m.bound.Store(tok, thumb)
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"access_token":%q,"token_type":%q,"expires_in":3600}`, tok, typ)
}

func (m *mtlsServer) api(w http.ResponseWriter, r *http.Request) {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	bound := certBinding(&Entry{AccessToken: tok})
	if b, ok := m.bound.Load(tok); ok {
		bound = b.(string)
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		sum := sha256.Sum256(r.TLS.PeerCertificates[0].Raw)
		if bound != "" && bound == base64.RawURLEncoding.EncodeToString(sum[:]) {
			m.apiCalls.Add(1)
			io.WriteString(w, "ok")
			return
		}
	}
	m.apiRefused.Add(1)
	w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="the token is bound to another certificate, or none was presented"`)
	w.WriteHeader(http.StatusUnauthorized)
}

// certFiles writes a certificate and its key to files in a directory of
// their own, and returns their paths.
func certFiles(t testing.TB, certPEM, keyPEM string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	c, k := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	followtest.Write(t, c, certPEM)
	followtest.Write(t, k, keyPEM)
	return c, k
}

// source returns a source of client svc at m's token endpoint with the
// certificate and key certPEM, keyPEM (written to files of their own,
// whose paths it returns too), closed at the test's end; mod, if not nil,
// changes its Config first.
func (m *mtlsServer) source(t testing.TB, certPEM, keyPEM string, mod func(*Config)) (s *TokenSource, certFile, keyFile string) {
	t.Helper()
	cf, kf := certFiles(t, certPEM, keyPEM)
	cfg := Config{TokenURL: m.URL + "/oauth/token", ClientID: "svc", ClientCertFile: cf, ClientKeyFile: kf, CAFile: m.caFile}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, cf, kf
}

// apiOK calls m's API through s.Client(), and fails the test unless it
// answers 200.
func (m *mtlsServer) apiOK(t testing.TB, s *TokenSource) {
	t.Helper()
	resp, err := s.Client().Get(m.URL + "/api")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("API through Client(): %s, want 200", resp.Status)
	}
}

// TestTLSClientAuth: with either method, the certificate authenticates the
// client (nothing secret is sent), the token is bound to it, Client()
// presents it to the API, and the API refuses the token without it.
func TestTLSClientAuth(t *testing.T) {
	for _, method := range []AuthMethod{TLSClientAuth, SelfSignedTLSClientAuth} {
		t.Run(method.String(), func(t *testing.T) {
			m := newMTLSServer(t)
			var certPEM, keyPEM string
			if method == TLSClientAuth {
				certPEM, keyPEM = m.ca.issue(t, "svc", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), false)
			} else {
				certPEM, keyPEM = (*testCA)(nil).issue(t, "svc", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), false)
				m.selfSign.Store(thumbOf(t, certPEM))
			}
			s, _, _ := m.source(t, certPEM, keyPEM, func(c *Config) { c.AuthMethod = method })
			tok, err := s.Token()
			if err != nil {
				t.Fatal(err)
			}
			if form := <-m.forms; form != "client_id=svc&grant_type=client_credentials" {
				t.Errorf("token request body %q, want the client ID alone", form)
			}
			if got := certBinding(&Entry{AccessToken: tok.AccessToken}); got != thumbOf(t, certPEM) {
				t.Errorf("token bound to %q, want the client certificate's %q", got, thumbOf(t, certPEM))
			}
			m.apiOK(t, s)
			// The same token over a connection without the certificate.
			plain := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: m.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}}}
			req, _ := http.NewRequest("GET", m.URL+"/api", nil)
			req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
			if resp, err := plain.Do(req); err == nil {
				resp.Body.Close()
				t.Errorf("API without the certificate: %s, want a refusal", resp.Status)
			}
		})
	}
}

// TestCertificateBoundTokenTypedDPoP: Auth0 documents token_type DPoP for
// its mTLS-bound tokens. A token bound to the client's certificate and to
// no key is taken, and presented as Bearer with the certificate, with one
// line logged; one that also names a DPoP key is still refused without a
// DPoP key.
func TestCertificateBoundTokenTypedDPoP(t *testing.T) {
	m := newMTLSServer(t)
	m.dpopTyped.Store(true)
	certPEM, keyPEM := m.ca.issue(t, "svc", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), false)
	var logs logBuffer
	s, _, _ := m.source(t, certPEM, keyPEM, func(c *Config) { c.Logger = logs.logger() })
	for range 3 {
		tok, err := s.Token()
		if err != nil {
			t.Fatal(err)
		}
		if tok.TokenType != "Bearer" {
			t.Errorf("TokenType %q, want Bearer", tok.TokenType)
		}
		m.apiOK(t, s)
		s.Invalidate(tok)
	}
	logged := logs.String()
	if n := strings.Count(logged, "typed a certificate-bound token DPoP"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, logged)
	}

	m.withJKT.Store(true)
	s2, _, _ := m.source(t, certPEM, keyPEM, nil)
	if _, err := s2.Token(); err == nil || !strings.Contains(err.Error(), "DPoP-bound token to a request without a DPoP proof") {
		t.Errorf("a token bound to a DPoP key too: err %v, want it refused", err)
	}
}

// TestCertificateRotatedWhileCallersRun: callers go on calling the API
// through Client() while the certificate is renewed on disk, its two
// files replaced one after the other (so that for a moment they do not
// match); no call fails, the half-changed pair is never taken, and after
// the next look at the files the token in use is bound to the new
// certificate: no token bound to the one before is sent over the new
// one's connections (the API refuses none). An opaque token, whose
// binding the client cannot read, is taken to be bound to the certificate
// it was fetched with.
func TestCertificateRotatedWhileCallersRun(t *testing.T) {
	for _, opaque := range []bool{false, true} {
		name := "jwt"
		if opaque {
			name = "opaque"
		}
		t.Run(name, func(t *testing.T) { rotateWhileCallersRun(t, opaque) })
	}
}

func rotateWhileCallersRun(t *testing.T, opaque bool) {
	m := newMTLSServer(t)
	m.opaque.Store(opaque)
	c1, k1 := m.ca.issue(t, "svc", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), false)
	c2, k2 := m.ca.issue(t, "svc", time.Now().Add(-time.Minute), time.Now().Add(48*time.Hour), false)
	cf, kf := certFiles(t, c1, k1)
	var logs logBuffer
	clk := clock.NewFake(time.Now())
	s, err := newSource(Config{TokenURL: m.URL + "/oauth/token", ClientID: "svc", ClientCertFile: cf, ClientKeyFile: kf, CAFile: m.caFile,
		Logger: logs.logger()}, clk)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.c.cfg.AuthMethod != TLSClientAuth {
		t.Fatalf("AuthMethod %v, want tls_client_auth for a certificate alone", s.c.cfg.AuthMethod)
	}
	hc := s.Client()
	var calls, failed atomic.Int64
	stop := untilStopped(4, func() {
		calls.Add(1)
		resp, err := hc.Get(m.URL + "/api")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if err != nil || resp.StatusCode != 200 {
			failed.Add(1)
		}
	})
	eventually(t, "calls before the rotation", func() bool { return m.apiCalls.Load() > 50 })
	// The certificate first, then its key: in between they do not match.
	followtest.RenameOver(t, cf, c2)
	clk.Advance(certCheck) // a look at the files now sees a pair that does not match
	followtest.RenameOver(t, kf, k2)
	before := m.apiCalls.Load()
	clk.Advance(certCheck)
	eventually(t, "calls after the rotation", func() bool { return m.apiCalls.Load() > before+50 })
	stop()
	if n := failed.Load(); n != 0 {
		t.Errorf("%d of %d calls failed across the rotation", n, calls.Load())
	}
	if n := m.apiRefused.Load(); n != 0 {
		t.Errorf("the API refused %d tokens: a token bound to the certificate before was sent over the new one's connections", n)
	}
	tok, err := s.Token()
	if err != nil {
		t.Fatal(err)
	}
	got := certBinding(&Entry{AccessToken: tok.AccessToken})
	if b, ok := m.bound.Load(tok.AccessToken); ok {
		got = b.(string)
	}
	if got != thumbOf(t, c2) {
		t.Errorf("after the rotation the token is bound to %q, want the new certificate's", got)
	}
	if !strings.Contains(logs.String(), "the client certificate changed") {
		t.Errorf("the change was not logged:\n%s", logs.String())
	}
	t.Logf("%d calls through the rotation, %d failed, %d token requests", calls.Load(), failed.Load(), m.requests.Load())
}

// TestCertificateRenewedUnboundTokenKept: a JWT that names no certificate
// (a server that authenticates the client by its certificate and does not
// bind its tokens) is kept when the certificate is renewed: the renewal
// costs no token request.
func TestCertificateRenewedUnboundTokenKept(t *testing.T) {
	m := newMTLSServer(t)
	m.unbound.Store(true)
	c1, k1 := m.ca.issue(t, "svc", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), false)
	c2, k2 := m.ca.issue(t, "svc", time.Now().Add(-time.Minute), time.Now().Add(48*time.Hour), false)
	s, cf, kf := m.source(t, c1, k1, nil)
	before, err := s.Token()
	if err != nil {
		t.Fatal(err)
	}
	followtest.RenameOver(t, cf, c2)
	followtest.RenameOver(t, kf, k2)
	if v, _ := s.c.cert.current(t.Context()); v.thumb != thumbOf(t, c2) {
		t.Fatal("the renewed certificate was not taken")
	}
	after, err := s.Token()
	if err != nil {
		t.Fatal(err)
	}
	if after.AccessToken != before.AccessToken || m.requests.Load() != 1 {
		t.Errorf("%d token requests: the renewal dropped a token bound to no certificate", m.requests.Load())
	}
}

// TestTwoCertificatesNeverShareAToken: two sources of one client with
// different certificates, sharing a cache, get a token each, bound to its
// own certificate; two with the same certificate share one.
func TestTwoCertificatesNeverShareAToken(t *testing.T) {
	m := newMTLSServer(t)
	cache := NewMemoryCache()
	src := func(certPEM, keyPEM string) *TokenSource {
		s, _, _ := m.source(t, certPEM, keyPEM, func(c *Config) { c.Cache = cache })
		return s
	}
	c1, k1 := m.ca.issue(t, "svc", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), false)
	c2, k2 := m.ca.issue(t, "svc", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), false)
	a, b, same := src(c1, k1), src(c2, k2), src(c1, k1)
	for _, s := range []*TokenSource{a, b, same} {
		tok, err := s.Token()
		if err != nil {
			t.Fatal(err)
		}
		want := thumbOf(t, c1)
		if s == b {
			want = thumbOf(t, c2)
		}
		if got := certBinding(&Entry{AccessToken: tok.AccessToken}); got != want {
			t.Errorf("a source got a token bound to another certificate")
		}
	}
	if a.CacheKey() == b.CacheKey() || a.CacheKey() != same.CacheKey() {
		t.Error("the cache key does not follow the certificate")
	}
	if n := m.requests.Load(); n != 2 {
		t.Errorf("%d token requests, want 2: one per certificate", n)
	}
}

// TestCertificateExpiringWarns: a certificate with less than a tenth of
// its validity left gets a warning and an Observer event, once; Stats says
// when it expires.
func TestCertificateExpiringWarns(t *testing.T) {
	m := newMTLSServer(t)
	notAfter := time.Now().Add(time.Hour).Truncate(time.Second)
	c, k := m.ca.issue(t, "svc", notAfter.Add(-20*time.Hour), notAfter, false)
	var logs logBuffer
	var events atomic.Int32
	s, _, _ := m.source(t, c, k, func(cfg *Config) {
		cfg.Logger = logs.logger()
		cfg.Observer = &Observer{CertificateExpiring: func(info CertificateInfo) { events.Add(1) }}
	})
	if _, err := s.Token(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "the client certificate is about to expire") || strings.Count(logs.String(), "about to expire") != 1 {
		t.Errorf("want one warning:\n%s", logs.String())
	}
	if events.Load() != 1 {
		t.Errorf("%d CertificateExpiring events, want 1", events.Load())
	}
	if got := s.Stats().ClientCertificateExpiry; !got.Equal(notAfter) {
		t.Errorf("Stats().ClientCertificateExpiry %v, want %v", got, notAfter)
	}
}

// TestClientCertificateSettings: the certificate and its key go together,
// one way, with the source's own HTTP client; the mTLS methods need it.
func TestClientCertificateSettings(t *testing.T) {
	for _, tt := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"cert without key", func(c *Config) { c.ClientCertFile = "c" }, "Config.ClientCertFile and Config.ClientKeyFile go together"},
		{"method without cert", func(c *Config) { c.AuthMethod = TLSClientAuth }, "Config.AuthMethod tls_client_auth needs Config.ClientCertFile"},
		{"with a secret", func(c *Config) {
			c.ClientSecret = "s"
			c.AuthMethod = SelfSignedTLSClientAuth
			c.ClientCertFile, c.ClientKeyFile = "c", "k"
		},
			"Config.ClientSecret is set with Config.AuthMethod self_signed_tls_client_auth"},
		{"with an HTTPClient", func(c *Config) { c.ClientCertFile, c.ClientKeyFile = "c", "k"; c.HTTPClient = http.DefaultClient }, "Config.ClientCertFile and Config.HTTPClient are both set"},
		{"missing files", func(c *Config) { c.ClientCertFile, c.ClientKeyFile = "/nonexistent/c", "/nonexistent/k" }, "Config.ClientCertFile: /nonexistent/c"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{TokenURL: "https://tenant.example.com/oauth/token", ClientID: "svc"}
			tt.mod(&cfg)
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
}

func ipLoopback() []net.IP { return []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback} }

// boundJWT is an unsigned JWT access token bound to the thumbprint x5t.
func boundJWT(x5t string, n int) string {
	claims, _ := json.Marshal(map[string]any{"sub": "svc@clients", "n": n, "cnf": map[string]string{"x5t#S256": x5t}})
	return "eyJhbGciOiJub25lIn0." + base64.RawURLEncoding.EncodeToString(claims) + ".c2ln"
}

// TestTokenBoundToAnotherCertificateRefused: a token endpoint that answers
// with a token bound to a certificate the client did not present (a proxy
// that ends TLS and presents its own, or a lying server) is not taken: the
// API would refuse it over every connection the client makes. The error
// names both thumbprints and the likely cause, and is not retried.
func TestTokenBoundToAnotherCertificateRefused(t *testing.T) {
	other := thumbOf(t, func() string {
		c, _ := newTestCA(t).issue(t, "svc", time.Now(), time.Now().Add(time.Hour), false)
		return c
	}())
	m := newMTLSServer(t)
	var requests atomic.Int64
	m.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := requests.Add(1)
		r.ParseForm()
		x5t := other
		if secret := r.PostForm.Get("client_secret"); secret != "" {
			x5t = secret // an endpoint that echoes the request
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":3600}`, boundJWT(x5t, int(n)))
	})
	c, k := m.ca.issue(t, "svc", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), false)
	s, _, _ := m.source(t, c, k, nil)
	_, err := s.Token()
	if err == nil {
		t.Fatalf("took a token bound to another certificate (%d token requests)", requests.Load())
	}
	for _, want := range []string{other, thumbOf(t, c), "proxy", "Config.ClientCertFile"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q: %v", want, err)
		}
	}
	if n := requests.Load(); n != 1 {
		t.Errorf("%d token requests, want 1: retrying cannot change the certificate the server sees", n)
	}

	// A secret sent over mTLS, echoed where the thumbprint goes, is not shown.
	s2, _, _ := m.source(t, c, k, func(c *Config) { c.ClientSecret = "s3cret-value-of-the-client" })
	_, err = s2.Token()
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "not a certificate's thumbprint") {
		t.Errorf("err %v, want the binding refused without the echoed secret", err)
	}
}

// TestCachedTokenBoundToAnotherCertificateNotTaken: a token in the shared
// cache under this source's key but bound to another certificate (written
// by another writer of the cache) is not taken: the API would refuse it
// over this client's connections.
func TestCachedTokenBoundToAnotherCertificateNotTaken(t *testing.T) {
	m := newMTLSServer(t)
	c, k := m.ca.issue(t, "svc", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), false)
	cache := NewMemoryCache()
	s, _, _ := m.source(t, c, k, func(c *Config) { c.Cache = cache })
	other := boundJWT("YW5vdGhlci1jZXJ0aWZpY2F0ZQ", 0)
	now := time.Now()
	if err := cache.Set(t.Context(), s.CacheKey(), &Entry{AccessToken: other, TokenType: "Bearer", IssuedAt: now, Expiry: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	tok, err := s.Token()
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken == other {
		t.Fatalf("took a cached token bound to %q, not to this client's certificate %q", certBinding(&Entry{AccessToken: other}), thumbOf(t, c))
	}
	if got := certBinding(&Entry{AccessToken: tok.AccessToken}); got != thumbOf(t, c) {
		t.Errorf("token bound to %q, want %q", got, thumbOf(t, c))
	}
}

// TestOpaqueTokenFetchedAcrossARenewal: the certificate is renewed (and
// taken up) while a token request is under way over a connection that
// presents the one before. The opaque token the server binds to that
// certificate is not held as bound to the new one, nor stored under the
// new one's cache key: the token is asked for again with the new
// certificate, and the API accepts what the client sends.
func TestOpaqueTokenFetchedAcrossARenewal(t *testing.T) {
	m := newMTLSServer(t)
	m.opaque.Store(true)
	c1, k1 := m.ca.issue(t, "svc", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), false)
	c2, k2 := m.ca.issue(t, "svc", time.Now().Add(-time.Minute), time.Now().Add(48*time.Hour), false)
	cache := NewMemoryCache()
	s, cf, kf := m.source(t, c1, k1, func(c *Config) { c.Cache = cache })
	inner := m.Config.Handler
	var once sync.Once
	m.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/oauth/token" {
			once.Do(func() {
				// The renewal lands while this request is under way.
				followtest.RenameOver(t, cf, c2)
				followtest.RenameOver(t, kf, k2)
				if v, _ := s.c.cert.current(context.Background()); v.thumb != thumbOf(t, c2) {
					t.Error("the renewed certificate was not taken")
				}
			})
		}
		inner.ServeHTTP(w, r)
	})
	tok, err := s.Token()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := m.bound.Load(tok.AccessToken)
	if b != thumbOf(t, c2) {
		t.Errorf("the token is bound to %v, want the renewed certificate", b)
	}
	if h := s.cur.Load(); h == nil || h.x5t != b {
		t.Errorf("the token is held as bound to %q, want %v", h.x5t, b)
	}
	if e, _ := cache.Get(t.Context(), s.CacheKey()); e == nil || e.AccessToken != tok.AccessToken {
		t.Error("the token is not stored under the key that names the renewed certificate")
	}
	resp, err := s.Client().Get(m.URL + "/api")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n := m.apiRefused.Load(); n != 0 || resp.StatusCode != 200 {
		t.Errorf("the API refused %d tokens (status %s)", n, resp.Status)
	}
	if n := m.requests.Load(); n != 2 {
		t.Errorf("%d token requests, want 2 (the one across the renewal asked again)", n)
	}
}

// TestCertificateRefusedInTheHandshake: a server that verifies client
// certificates in the handshake (nginx's ssl_verify_client, a FAPI
// gateway) refuses an expired certificate, one from a CA it does not
// trust, or none, with a TLS alert. The fetch is not retried as a network
// failure (the certificate will not change in the seconds a fetch
// retries), and the error names the setting to fix.
func TestCertificateRefusedInTheHandshake(t *testing.T) {
	m := newMTLSServer(t)
	m.Close()
	other := newTestCA(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"x","token_type":"Bearer","expires_in":3600}`)
	}))
	srv.TLS = m.TLS.Clone()
	srv.TLS.ClientAuth, srv.TLS.ClientCAs = tls.RequireAndVerifyClientCert, other.Pool()
	srv.StartTLS()
	defer srv.Close()
	for _, tc := range []struct{ name, want string }{
		{"untrusted CA", "Config.ClientCertFile is a certificate the server trusts"},
		{"expired", "; it expired at "},
		{"none", "the server asks for a client certificate: give the client one with Config.ClientCertFile and Config.ClientKeyFile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{TokenURL: srv.URL + "/oauth/token", ClientID: "svc", CAFile: m.caFile, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
			var c, k string
			switch tc.name {
			case "expired":
				c, k = other.issue(t, "svc", time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour), false)
			case "untrusted CA":
				c, k = m.ca.issue(t, "svc", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), false)
			default:
				cfg.ClientSecret = "s"
			}
			if c != "" {
				cfg.ClientCertFile, cfg.ClientKeyFile = certFiles(t, c, k)
			}
			s, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			_, err = s.Token()
			var te *TokenError
			if !errors.As(err, &te) {
				t.Fatalf("err %v", err)
			}
			if te.Temporary || s.Stats().TokenRequests > 1 {
				t.Errorf("retried as a network failure: %d token requests", s.Stats().TokenRequests)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("the error does not say %q: %v", tc.want, err)
			}
		})
	}
}

// TestCertificateFileMistakes: a certificate and key that cannot make a
// pair are refused at start with what is wrong and which file, in the
// library and through the settings (the command's variables).
func TestCertificateFileMistakes(t *testing.T) {
	ca := newTestCA(t)
	c1, k1 := ca.issue(t, "svc", time.Now().Add(-time.Hour), time.Now().Add(time.Hour), false)
	_, k2 := ca.issue(t, "svc", time.Now().Add(-time.Hour), time.Now().Add(time.Hour), false)
	for _, tt := range []struct {
		name, cert, key string
		want            func(cf, kf string) string
	}{
		{"key of another certificate", c1, k2, func(cf, kf string) string {
			return "the private key in " + kf + " is not the key of the certificate in " + cf
		}},
		{"empty certificate", "", k1, func(cf, _ string) string { return cf + " is empty" }},
		{"empty key", c1, "\n", func(_, kf string) string { return kf + " is empty: it should hold the certificate's private key" }},
		{"files swapped", k1, c1, func(cf, _ string) string {
			return cf + ` holds no certificate (PEM "CERTIFICATE" block): is it the certificate's file?`
		}},
		{"key file holds the certificate", c1, c1, func(_, kf string) string {
			return kf + ` holds no private key (PEM "PRIVATE KEY" block): is it the key's file?`
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cf, kf := certFiles(t, tt.cert, tt.key)
			want := tt.want(cf, kf)
			_, err := New(Config{TokenURL: "https://tenant.example.com/oauth/token", ClientID: "svc", ClientCertFile: cf, ClientKeyFile: kf})
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("New: err %v, want %q", err, want)
			}
			env := map[string]string{"M2MTOKEN_TOKEN_URL": "https://tenant.example.com/oauth/token", "AUTH0_CLIENT_ID": "svc",
				"M2MTOKEN_CLIENT_CERT_FILE": cf, "M2MTOKEN_CLIENT_KEY_FILE": kf}
			_, err = ConfigFromLookup(func(k string) (string, bool) { v, ok := env[k]; return v, ok }, nil)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("ConfigFromLookup: err %v, want %q", err, want)
			}
		})
	}
}
