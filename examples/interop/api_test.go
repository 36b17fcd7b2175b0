package main

// The API of the mTLS interop tests: a resource server that checks
// oidc-provider's certificate-bound tokens as RFC 8705 section 3 says.

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// boundAPI is a resource server that accepts oidc-provider's access tokens
// for the resource only with the certificate they are bound to. It reads a
// JWT access token itself (the signature under the provider's published
// keys) and has the provider introspect an opaque one; then it checks the
// audience, the expiry, and cnf.x5t#S256 against the certificate presented
// in the TLS handshake. It asks for a certificate but lets a request
// without one through, to be refused for its token, with the reason.
type boundAPI struct {
	*httptest.Server
	keys       jose.JSONWebKeySet
	introspect func(token string) (*http.Response, error)

	mu      sync.Mutex
	calls   map[string]int // accepted calls per certificate thumbprint
	refused []string       // the reasons, in order
}

// tokenClaims are what the API checks of a token.
type tokenClaims struct {
	Active bool  `json:"active"` // introspection's
	Aud    any   `json:"aud"`
	Exp    int64 `json:"exp"`
	Cnf    struct {
		X5t string `json:"x5t#S256"`
	} `json:"cnf"`
}

func newBoundAPI(t *testing.T, m *mtlsProvider) *boundAPI {
	t.Helper()
	hc := presenting(t, m, nil)
	resp, err := hc.Get(m.issuer() + "/jwks")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	a := &boundAPI{calls: map[string]int{}}
	if err := json.NewDecoder(resp.Body).Decode(&a.keys); err != nil || len(a.keys.Keys) == 0 {
		t.Fatalf("the provider's jwks: %v", err)
	}
	a.introspect = func(token string) (*http.Response, error) {
		req, _ := http.NewRequest("POST", m.issuer()+"/token/introspection", strings.NewReader(url.Values{"token": {token}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("interop-api", "interop-secret")
		return hc.Do(req)
	}
	pair := m.serverCA.issue(t, pkix.Name{CommonName: "api"}, true)
	cert, err := tls.X509KeyPair([]byte(pair.cert), []byte(pair.key))
	if err != nil {
		t.Fatal(err)
	}
	a.Server = httptest.NewUnstartedServer(http.HandlerFunc(a.serve))
	a.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert}
	a.StartTLS()
	t.Cleanup(a.Close)
	return a
}

func (a *boundAPI) serve(w http.ResponseWriter, r *http.Request) {
	thumb, err := a.check(r)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		a.refused = append(a.refused, err.Error())
		w.Header().Set("WWW-Authenticate", fmt.Sprintf("Bearer error=%q, error_description=%q", "invalid_token", err.Error()))
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	a.calls[thumb]++
	io.WriteString(w, "ok")
}

// check returns the thumbprint of the certificate a valid token came with.
func (a *boundAPI) check(r *http.Request) (string, error) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return "", errors.New("no bearer token")
	}
	read := a.verify
	if strings.Count(tok, ".") != 2 {
		read = a.introspected
	}
	c, err := read(tok)
	if err != nil {
		return "", err
	}
	switch {
	case c.Aud != resource:
		return "", fmt.Errorf("audience %v", c.Aud)
	case time.Now().Unix() >= c.Exp:
		return "", errors.New("expired")
	case c.Cnf.X5t == "":
		return "", errors.New("the token is not bound to a certificate")
	case len(r.TLS.PeerCertificates) == 0:
		return "", errors.New("the token is bound to a certificate, and none was presented")
	}
	sum := sha256.Sum256(r.TLS.PeerCertificates[0].Raw)
	if thumb := base64.RawURLEncoding.EncodeToString(sum[:]); thumb != c.Cnf.X5t {
		return "", errors.New("the token is bound to another certificate than the one presented")
	}
	return c.Cnf.X5t, nil
}

// verify reads a JWT access token signed with one of the provider's keys.
func (a *boundAPI) verify(tok string) (*tokenClaims, error) {
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256, jose.EdDSA})
	if err != nil {
		return nil, err
	}
	keys := a.keys.Key(jws.Signatures[0].Header.KeyID)
	if len(keys) == 0 {
		return nil, errors.New("signed with an unknown key")
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		return nil, err
	}
	var c tokenClaims
	return &c, json.Unmarshal(payload, &c)
}

// introspected has the provider introspect an opaque token (RFC 7662).
func (a *boundAPI) introspected(tok string) (*tokenClaims, error) {
	resp, err := a.introspect(tok)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var c tokenClaims
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil || resp.StatusCode != 200 {
		return nil, fmt.Errorf("introspection: %s, %v", resp.Status, err)
	}
	if !c.Active {
		return nil, errors.New("the token is not active")
	}
	return &c, nil
}

func (a *boundAPI) accepted(thumb string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls[thumb]
}

func (a *boundAPI) refusals() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.refused)
}

// call sends GET / with token (if not empty) through hc, and returns the
// status and the body.
func (a *boundAPI) call(t *testing.T, hc *http.Client, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", a.URL, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

// presenting is an HTTP client that trusts the servers' CA and presents
// pair, or no certificate if pair is nil.
func presenting(t *testing.T, m *mtlsProvider, pair *keyPair) *http.Client {
	t.Helper()
	cfg := &tls.Config{RootCAs: m.roots()}
	if pair != nil {
		cert, err := tls.X509KeyPair([]byte(pair.cert), []byte(pair.key))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
}

// binding is the certificate thumbprint a token is bound to, as the API
// reads it (from the JWT, or by introspection).
func (a *boundAPI) binding(t *testing.T, tok string) string {
	t.Helper()
	read := a.verify
	if strings.Count(tok, ".") != 2 {
		read = a.introspected
	}
	c, err := read(tok)
	if err != nil {
		t.Fatal(err)
	}
	return c.Cnf.X5t
}
