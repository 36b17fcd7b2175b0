package m2mtoken

import (
	"crypto"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// joseThumbprint is go-jose's RFC 7638 thumbprint of key's public half.
func joseThumbprint(t testing.TB, key crypto.Signer) string {
	t.Helper()
	jwk := jose.JSONWebKey{Key: key.Public()}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}

// checkProof verifies a proof with go-jose, independently: typ, a public
// jwk that is key's, the signature with that jwk. It returns the claims.
func checkProof(t testing.TB, proof string, key crypto.Signer) map[string]any {
	t.Helper()
	jws, err := jose.ParseSignedCompact(proof, []jose.SignatureAlgorithm{jose.ES256, jose.PS256, jose.RS256, jose.EdDSA})
	if err != nil {
		t.Fatalf("proof %.40q: %v", proof, err)
	}
	h := jws.Signatures[0].Header
	if h.ExtraHeaders["typ"] != "dpop+jwt" || h.JSONWebKey == nil || !h.JSONWebKey.IsPublic() {
		t.Fatalf("proof header %+v", h)
	}
	tp, _ := h.JSONWebKey.Thumbprint(crypto.SHA256)
	if base64.RawURLEncoding.EncodeToString(tp) != joseThumbprint(t, key) {
		t.Fatal("the proof's jwk is not the DPoP key")
	}
	payload, err := jws.Verify(h.JSONWebKey)
	if err != nil {
		t.Fatalf("go-jose: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

func dpopAnswer(w http.ResponseWriter, n int64) {
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"access_token":"tok-%d","token_type":"DPoP","expires_in":100}`, n)
}

func (e *endpoint) header(i int) http.Header {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.headers[i]
}

// TestDPoPProofAtTokenEndpoint: each key type; the proof verifies with
// go-jose under the embedded key, which is the DPoP key; htm POST, htu the
// URL posted to (the mTLS alias when set), iat now, a new jti each time.
func TestDPoPProofAtTokenEndpoint(t *testing.T) {
	ed := ed25519Key(t)
	rk := rsaKey(t, 2048)
	for _, c := range []struct {
		name, alg string
		key       crypto.Signer
		mtls      bool
	}{
		{"ES256", "", ecKey(t, elliptic.P256()), false}, {"ES256 mTLS alias", "", ecKey(t, elliptic.P256()), true},
		{"PS256", "", rk, false}, {"RS256", "RS256", rk, false}, {"EdDSA", "", ed, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEndpoint(t)
			e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool { dpopAnswer(w, n); return true })
			s, clk := testSource(t, e, func(cfg *Config) {
				cfg.DPoPKey, cfg.DPoPAlgorithm, cfg.MinInvalidateInterval = c.key, c.alg, -1
				if c.mtls {
					cfg.TokenURL, cfg.Domain, cfg.MTLSTokenURL = "", "tenant.example.com", e.URL+"/mtls/oauth/token"
				}
			})
			tok, err := s.Token()
			if err != nil || tok.TokenType != "DPoP" || tok.Type() != "DPoP" {
				t.Fatalf("%+v %v", tok, err)
			}
			s.Invalidate(tok)
			if _, err := s.Token(); err != nil {
				t.Fatal(err)
			}
			wantHTU := e.URL + "/oauth/token"
			if c.mtls {
				wantHTU = e.URL + "/mtls/oauth/token"
			}
			var jtis []string
			for i := 0; i < 2; i++ {
				cl := checkProof(t, e.header(i).Get("DPoP"), c.key)
				if cl["htm"] != "POST" || cl["htu"] != wantHTU || cl["iat"] != float64(clk.Now().Unix()) || cl["ath"] != nil || cl["nonce"] != nil {
					t.Fatalf("claims %v, want htu %s", cl, wantHTU)
				}
				jtis = append(jtis, cl["jti"].(string))
			}
			if jtis[0] == jtis[1] || jtis[0] == "" {
				t.Fatalf("jti %q", jtis)
			}
			if s.DPoPThumbprint() != joseThumbprint(t, c.key) {
				t.Fatal("DPoPThumbprint is not go-jose's")
			}
		})
	}
}

// TestDPoPNonceAtTokenEndpoint: use_dpop_nonce is followed at once with a
// new proof carrying the nonce (and, with Private Key JWT, a new
// assertion), without spending an attempt or sleeping; a nonce from any
// answer replaces the remembered one.
func TestDPoPNonceAtTokenEndpoint(t *testing.T) {
	for _, pkjwt := range []bool{false, true} {
		t.Run(fmt.Sprintf("pkjwt=%v", pkjwt), func(t *testing.T) {
			e := newEndpoint(t)
			e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
				switch n {
				case 1:
					w.Header().Set("DPoP-Nonce", "nonce-1")
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(400)
					io.WriteString(w, `{"error":"use_dpop_nonce","error_description":"Authorization server requires nonce in DPoP proof"}`)
				default:
					w.Header().Set("DPoP-Nonce", fmt.Sprintf("nonce-%d", n))
					dpopAnswer(w, n)
				}
				return true
			})
			key := ecKey(t, elliptic.P256())
			s, _ := testSource(t, e, func(c *Config) {
				c.DPoPKey, c.MaxAttempts, c.MinInvalidateInterval = key, 1, -1
				if pkjwt {
					c.ClientSecret, c.PrivateKey = "", rsaKey(t, 2048)
				}
			})
			done := make(chan error, 1)
			go func() { _, err := s.Token(); done <- err }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the nonce retry waited (a backoff on the fake clock?)")
			}
			st := s.Stats()
			if st.TokenRequests != 2 || st.Failures != 0 {
				t.Fatalf("stats %+v", st)
			}
			if n := checkProof(t, e.header(0).Get("DPoP"), key)["nonce"]; n != nil {
				t.Fatalf("first proof had nonce %v", n)
			}
			if n := checkProof(t, e.header(1).Get("DPoP"), key)["nonce"]; n != "nonce-1" {
				t.Fatalf("retry's nonce %v", n)
			}
			if pkjwt && e.form(0).Get("client_assertion") == e.form(1).Get("client_assertion") {
				t.Fatal("the retry reused the client assertion")
			}
			// The success answer rotated the nonce: the next fetch uses it at once.
			tok, _ := s.Token()
			s.Invalidate(tok)
			if _, err := s.Token(); err != nil {
				t.Fatal(err)
			}
			if n := checkProof(t, e.header(2).Get("DPoP"), key)["nonce"]; n != "nonce-2" || e.count() != 3 {
				t.Fatalf("third proof's nonce %v after %d requests", n, e.count())
			}
		})
	}
}

// TestDPoPNonceChallengeLoop: a server that asks for a nonce again and
// again is an error after a bounded number of tries.
func TestDPoPNonceChallengeLoop(t *testing.T) {
	e := newEndpoint(t)
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
		w.Header().Set("DPoP-Nonce", fmt.Sprint("n", n))
		w.WriteHeader(400)
		io.WriteString(w, `{"error":"use_dpop_nonce"}`)
		return true
	})
	s, _ := testSource(t, e, func(c *Config) { c.DPoPKey, c.MaxAttempts = ecKey(t, elliptic.P256()), 1 })
	_, err := s.Token()
	var te *TokenError
	if !errors.As(err, &te) || te.Code != "use_dpop_nonce" || e.count() != 1+maxNonceRetries || s.Stats().Failures != 1 {
		t.Fatalf("err %v after %d requests, stats %+v", err, e.count(), s.Stats())
	}
}

// TestDPoPBearerAnswer: a Bearer answer to a proof is used as a bearer
// token and logged once; with RequireDPoP it is an error. A DPoP answer
// to a source without a key is an error.
func TestDPoPBearerAnswer(t *testing.T) {
	e := newEndpoint(t) // answers Bearer
	logs := &logBuffer{}
	s, _ := testSource(t, e, func(c *Config) {
		c.DPoPKey, c.Logger, c.MinInvalidateInterval = ecKey(t, elliptic.P256()), logs.logger(), -1
	})
	tok, err := s.Token()
	if err != nil || tok.Type() != "Bearer" {
		t.Fatalf("%v %v", tok, err)
	}
	s.Invalidate(tok)
	if _, err := s.Token(); err != nil || e.count() != 2 {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), "answered a Bearer token although a DPoP proof was sent"); n != 1 {
		t.Fatalf("warning logged %d times:\n%s", n, logs)
	}

	s2, _ := testSource(t, e, func(c *Config) { c.DPoPKey, c.RequireDPoP, c.MaxAttempts = ecKey(t, elliptic.P256()), true, 1 })
	_, err = s2.Token()
	if err == nil || !strings.Contains(err.Error(), "RequireDPoP") {
		t.Fatalf("RequireDPoP: %v", err)
	}

	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool { dpopAnswer(w, n); return true })
	s3, _ := testSource(t, e, func(c *Config) { c.MaxAttempts = 1 })
	if _, err := s3.Token(); err == nil || !strings.Contains(err.Error(), "DPoPKey") {
		t.Fatalf("DPoP token without a key: %v", err)
	}
}

func TestDPoPConfigErrors(t *testing.T) {
	for name, c := range map[string]struct {
		mod  func(*Config)
		want string
	}{
		"require without key": {func(c *Config) { c.RequireDPoP = true }, "RequireDPoP"},
		"alg without key":     {func(c *Config) { c.DPoPAlgorithm = "ES256" }, "DPoPAlgorithm"},
		"P-384":               {func(c *Config) { c.DPoPKey = ecKey(t, elliptic.P384()) }, "DPoPKey"},
		"alg mismatch":        {func(c *Config) { c.DPoPKey, c.DPoPAlgorithm = ecKey(t, elliptic.P256()), "PS256" }, "DPoPKey"},
	} {
		cfg := Config{TokenURL: "https://a/t", ClientID: "c", ClientSecret: "s"}
		c.mod(&cfg)
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", name, err)
		}
	}
	cfg := Config{TokenURL: "https://a/t", ClientID: "c", ClientSecret: "s", DPoPKey: ecKey(t, elliptic.P256())}
	if s := fmt.Sprint(cfg); !strings.Contains(s, "dpop_key:<redacted>") {
		t.Fatalf("String: %s", s)
	}
}

// TestDPoPCacheSharing: sources with one key share one token through a
// cache; sources with different keys, or without a key, never share.
func TestDPoPCacheSharing(t *testing.T) {
	e := newEndpoint(t)
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
		if r.Header.Get("DPoP") == "" {
			return false
		}
		dpopAnswer(w, n)
		return true
	})
	cache := NewMemoryCache()
	k1, k2 := ecKey(t, elliptic.P256()), ecKey(t, elliptic.P256())
	pem1 := pemOf(t, k1)
	k1again, err := ParsePrivateKeyPEM(pem1)
	if err != nil {
		t.Fatal(err)
	}
	src := func(key crypto.Signer) *TokenSource {
		s, _ := testSource(t, e, func(c *Config) { c.Cache, c.DPoPKey = cache, key })
		return s
	}
	a, b, c, plain := src(k1), src(k1again), src(k2), src(nil)
	if a.CacheKey() != b.CacheKey() || a.CacheKey() == c.CacheKey() || a.CacheKey() == plain.CacheKey() {
		t.Fatalf("keys %s %s %s %s", a.CacheKey(), b.CacheKey(), c.CacheKey(), plain.CacheKey())
	}
	ta, _ := a.Token()
	tb, _ := b.Token()
	if ta.AccessToken != tb.AccessToken || e.count() != 1 || b.Stats().CacheHits != 1 {
		t.Fatalf("same key: %s %s, %d requests", ta.AccessToken, tb.AccessToken, e.count())
	}
	tc, _ := c.Token()
	tp, _ := plain.Token()
	if tc.AccessToken == ta.AccessToken || tp.AccessToken == ta.AccessToken || tp.Type() != "Bearer" || e.count() != 3 {
		t.Fatalf("other key %s, no key %s (%s), %d requests", tc.AccessToken, tp.AccessToken, tp.Type(), e.count())
	}
	// A cached entry of the wrong type is never adopted: a Bearer token
	// (stored before RequireDPoP was set) by a source that requires DPoP,
	// a DPoP token by a source without a key.
	for _, c := range []struct {
		typ string
		mod func(*Config)
	}{
		{"Bearer", func(c *Config) { c.DPoPKey, c.RequireDPoP = k1, true }},
		{"DPoP", func(c *Config) {}},
	} {
		fresh := NewMemoryCache()
		s, clk := testSource(t, e, func(cfg *Config) { c.mod(cfg); cfg.Cache = fresh })
		fresh.Set(t.Context(), s.CacheKey(), &Entry{AccessToken: "planted", TokenType: c.typ, IssuedAt: clk.Now(), Expiry: clk.Now().Add(time.Hour)})
		tok, err := s.Token()
		if err != nil || tok.AccessToken == "planted" || s.Stats().CacheHits != 0 {
			t.Fatalf("a cached %s token: %v %v, stats %+v", c.typ, tok, err, s.Stats())
		}
	}
}

// TestDPoPFileCacheKeepsTheType: a DPoP token read back from a file cache
// is still DPoP (the next run must not send it as Bearer).
func TestDPoPFileCacheKeepsTheType(t *testing.T) {
	e := newEndpoint(t)
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool { dpopAnswer(w, n); return true })
	dir := t.TempDir()
	key := ecKey(t, elliptic.P256())
	s1, _ := testSource(t, e, func(c *Config) { c.DPoPKey, c.Cache = key, NewFileCache(dir) })
	s1.Token()
	s2, _ := testSource(t, e, func(c *Config) { c.DPoPKey, c.Cache = key, NewFileCache(dir) })
	tok, err := s2.Token()
	if err != nil || tok.Type() != "DPoP" || e.count() != 1 {
		t.Fatalf("%v %v after %d requests", tok, err, e.count())
	}
}

// dpopIssuer is an m2mtest issuer whose client requires DPoP, with an API
// behind Protect; nonces are required at both if nonces is set.
func dpopIssuer(t *testing.T, c m2mtest.Client, nonces bool, mtlsPool *x509.CertPool) (*m2mtest.Server, *httptest.Server) {
	t.Helper()
	c.RequireDPoP = true
	c.Audiences = []string{"https://api.example.com/"}
	var iss *m2mtest.Server
	if mtlsPool != nil {
		iss = m2mtest.NewMTLSServer(mtlsPool, c)
	} else {
		iss = m2mtest.NewServer(c)
	}
	t.Cleanup(iss.Close)
	iss.RequireDPoPNonce(nonces, nonces)
	api := httptest.NewServer(iss.Protect("https://api.example.com/", nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "ok %s", b)
	})))
	t.Cleanup(api.Close)
	return iss, api
}

// recorder records the DPoP-Nonce headers of answers and the proofs of
// requests that pass through it.
type recorder struct {
	base   http.RoundTripper
	mu     sync.Mutex
	proofs []string
	nonces []string
	status []int
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.base.RoundTrip(req)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.proofs = append(r.proofs, req.Header.Get("DPoP"))
	if resp != nil {
		r.nonces = append(r.nonces, resp.Header.Get("DPoP-Nonce"))
		r.status = append(r.status, resp.StatusCode)
	}
	return resp, err
}

// TestDPoPEndToEnd: each client authentication method against an issuer
// that requires DPoP and nonces at the token endpoint and the API: the
// API is reached with bound tokens, each nonce is followed once, and the
// API never gets the token endpoint's nonce.
func TestDPoPEndToEnd(t *testing.T) {
	assertionKey := rsaKey(t, 2048)
	for _, method := range []string{"post", "basic", "private_key_jwt", "mtls"} {
		t.Run(method, func(t *testing.T) {
			client := m2mtest.Client{ID: "svc", Secret: "pw"}
			var pool *x509.CertPool
			var cert tls.Certificate
			if method == "private_key_jwt" {
				client = m2mtest.Client{ID: "svc", PublicKey: assertionKey.Public()}
			}
			if method == "mtls" {
				pool, cert = mtlsCerts(t)
			}
			iss, api := dpopIssuer(t, client, true, pool)
			tokenRec := &recorder{base: http.DefaultTransport}
			cfg := Config{TokenURL: iss.TokenURL(), ClientID: "svc", ClientSecret: "pw", Audience: "https://api.example.com/",
				DPoPKey: ecKey(t, elliptic.P256()), RequireDPoP: true, HTTPClient: &http.Client{Transport: tokenRec}}
			switch method {
			case "basic":
				cfg.AuthMethod = ClientSecretBasic
			case "private_key_jwt":
				cfg.ClientSecret, cfg.PrivateKey = "", assertionKey
			case "mtls":
				roots := x509.NewCertPool()
				roots.AddCert(iss.Certificate())
				tokenRec.base = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}}}
				cfg.TokenURL, cfg.Domain, cfg.MTLSTokenURL = "", "tenant.example.com", iss.TokenURL()
			}
			s, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			apiRec := &recorder{base: http.DefaultTransport}
			c := &http.Client{Transport: &Transport{Source: s, Base: apiRec}}
			for i := 0; i < 3; i++ {
				resp, err := c.Post(api.URL+"/v1/things?page=2", "text/plain", strings.NewReader("payload"))
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(body) != "ok payload" {
					t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
				}
			}
			tok, _ := s.Token()
			if tok.Type() != "DPoP" || iss.ClientRequests("svc") != 2 || iss.TokensIssued("svc") != 1 {
				t.Fatalf("%s token, %d token requests, %d issued", tok.Type(), iss.ClientRequests("svc"), iss.TokensIssued("svc"))
			}
			// API: 401 use_dpop_nonce, then three successes.
			if fmt.Sprint(apiRec.status) != "[401 200 200 200]" {
				t.Fatalf("API answers %v", apiRec.status)
			}
			tokenNonce, apiNonce := tokenRec.nonces[0], apiRec.nonces[0]
			if tokenNonce == "" || apiNonce == "" || tokenNonce == apiNonce {
				t.Fatalf("nonces %q %q", tokenNonce, apiNonce)
			}
			for i, p := range apiRec.proofs {
				cl := checkProof(t, p, cfg.DPoPKey)
				wantNonce := any(apiNonce)
				if i == 0 {
					wantNonce = nil
				}
				if cl["htm"] != "POST" || cl["htu"] != api.URL+"/v1/things" || cl["nonce"] != wantNonce || cl["ath"] == nil {
					t.Fatalf("API proof %d: %v", i, cl)
				}
			}
			if cl := checkProof(t, tokenRec.proofs[1], cfg.DPoPKey); cl["nonce"] != tokenNonce || cl["htu"] != iss.TokenURL() {
				t.Fatalf("token proof %v", cl)
			}
		})
	}
}

// TestDPoPTransportRecovery: invalid_token goes through invalidate and
// replay with a new bound token; a one-shot body is never replayed, not
// even for a nonce; a replayed proof is refused by the API.
func TestDPoPTransportRecovery(t *testing.T) {
	iss, _ := dpopIssuer(t, m2mtest.Client{ID: "svc", Secret: "pw"}, false, nil)
	var refuse sync.Map
	api := httptest.NewServer(iss.Protect("https://api.example.com/", nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "ok %s", b)
	})))
	defer api.Close()
	gate := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, revoked := refuse.Load(r.Header.Get("Authorization")); revoked {
			w.Header().Set("WWW-Authenticate", `DPoP algs="ES256", error="invalid_token", error_description="revoked"`)
			w.WriteHeader(401)
			return
		}
		api.Config.Handler.ServeHTTP(w, r)
	})
	front := httptest.NewServer(gate)
	defer front.Close()
	s, err := New(Config{TokenURL: iss.TokenURL(), ClientID: "svc", ClientSecret: "pw", Audience: "https://api.example.com/", DPoPKey: ecKey(t, elliptic.P256())})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tok1, _ := s.Token()
	refuse.Store("DPoP "+tok1.AccessToken, true)
	resp, err := s.Client().Post(front.URL+"/x", "text/plain", strings.NewReader("payload"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	tok2, _ := s.Token()
	if resp.StatusCode != 200 || string(body) != "ok payload" || tok2.AccessToken == tok1.AccessToken || iss.TokensIssued("svc") != 2 {
		t.Fatalf("%d %q, %d issued", resp.StatusCode, body, iss.TokensIssued("svc"))
	}

	// A nonce challenge with a one-shot body: the 401 goes to the caller.
	iss.RequireDPoPNonce(false, true)
	iss.RotateDPoPNonces()
	iss.RotateDPoPNonces()
	req, _ := http.NewRequest("POST", front.URL+"/x", io.MultiReader(strings.NewReader("once")))
	resp, err = s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "use_dpop_nonce") {
		t.Fatalf("one-shot body: %d %v", resp.StatusCode, resp.Header)
	}
	// The nonce from that answer is used next time, at once.
	rec := &recorder{base: http.DefaultTransport}
	c := &http.Client{Transport: &Transport{Source: s, Base: rec}}
	resp, err = c.Get(front.URL + "/y")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || len(rec.status) != 1 {
		t.Fatalf("%d after %v", resp.StatusCode, rec.status)
	}

	// Replaying a captured request (same proof) is refused. (The API at
	// api.URL is another origin: it has given no nonce yet.)
	iss.RequireDPoPNonce(false, false)
	h, err := s.AuthHeaders(t.Context(), "GET", api.URL+"/z")
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{200, 401} {
		req, _ := http.NewRequest("GET", api.URL+"/z", nil)
		req.Header = h.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("AuthHeaders request %d: %d, want %d", i, resp.StatusCode, want)
		}
	}
}

// TestDPoPOtherConsumers: what a DPoP source gives consumers that cannot
// make proofs. oauth2.Transport (and gRPC's oauth.TokenSource, which
// builds the same "TYPE TOKEN" value) sends "DPoP <token>" without a
// proof, which the API refuses: never a bearer token. Transport over a
// source that cannot sign proofs sends nothing.
func TestDPoPOtherConsumers(t *testing.T) {
	iss, api := dpopIssuer(t, m2mtest.Client{ID: "svc", Secret: "pw"}, false, nil)
	s, err := New(Config{TokenURL: iss.TokenURL(), ClientID: "svc", ClientSecret: "pw", Audience: "https://api.example.com/", DPoPKey: ecKey(t, elliptic.P256())})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	seen := &recorder{base: http.DefaultTransport}
	var auths []string
	spy := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		auths = append(auths, r.Header.Get("Authorization"))
		return seen.RoundTrip(r)
	})
	resp, err := (&http.Client{Transport: &oauth2.Transport{Source: s, Base: spy}}).Get(api.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.HasPrefix(auths[0], "DPoP ") || seen.proofs[0] != "" {
		t.Fatalf("oauth2.Transport: %d with %.10q", resp.StatusCode, auths[0])
	}
	body := &closeTracker{Reader: strings.NewReader("x")}
	req, _ := http.NewRequest("POST", api.URL, body)
	_, err = (&http.Client{Transport: &Transport{Source: oauth2.ReuseTokenSource(nil, s), Base: spy}}).Do(req)
	if !errors.Is(err, errNoProver) || len(auths) != 1 || !body.closed.Load() {
		t.Fatalf("Transport over a wrapped source: %v, %d requests sent", err, len(auths))
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestDPoPKeyCanary: the DPoP private key never appears in anything the
// library prints, logs, returns or stores, over the DPoP paths (nonces,
// a Bearer answer, errors, the transport, a file cache).
func TestDPoPKeyCanary(t *testing.T) {
	key := ecKey(t, elliptic.P256())
	pemKey := pemOf(t, key)
	d, dDecimal := privateScalar(t, key)
	canaries := []string{string(pemKey[40:80]), fmt.Sprintf("%x", d), base64.RawURLEncoding.EncodeToString(d), base64.StdEncoding.EncodeToString(d), dDecimal}
	logs := &logBuffer{}
	dir := t.TempDir()
	var outputs []string
	collect := func(vs ...any) {
		for _, v := range vs {
			for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
				outputs = append(outputs, fmt.Sprintf(verb, v))
			}
		}
	}
	e := newEndpoint(t)
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
		switch n {
		case 1:
			w.Header().Set("DPoP-Nonce", "n1")
			w.WriteHeader(400)
			io.WriteString(w, `{"error":"use_dpop_nonce"}`)
		case 2:
			w.WriteHeader(500)
		case 3:
			return false // a Bearer answer
		default:
			dpopAnswer(w, n)
		}
		return true
	})
	s, _ := testSource(t, e, func(c *Config) {
		c.DPoPKey, c.Logger, c.Cache, c.MinInvalidateInterval, c.MaxAttempts = key, logs.logger(), NewFileCache(dir), -1, 1
	})
	_, err := s.Token() // nonce, then 500
	collect(err)
	tok, err := s.Token() // Bearer
	collect(err)
	s.Invalidate(tok)
	tok, err = s.Token() // DPoP
	collect(err, tok)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("DPoP-Nonce", "api-n")
		w.Header().Set("WWW-Authenticate", `DPoP error="use_dpop_nonce"`)
		w.WriteHeader(401)
	}))
	defer api.Close()
	tr := &Transport{Source: s}
	if resp, err := (&http.Client{Transport: tr}).Get(api.URL); err == nil {
		resp.Body.Close()
	}
	h, err := s.AuthHeaders(t.Context(), "GET", api.URL)
	collect(s.cfg, &s.cfg, s, s.Stats(), tr, h, err, s.DPoPThumbprint(), NewFileCache(dir))
	outputs = append(outputs, logs.String())
	files, _ := os.ReadDir(dir)
	for _, f := range files {
		b, _ := os.ReadFile(filepath.Join(dir, f.Name()))
		outputs = append(outputs, string(b))
	}
	all := strings.Join(outputs, "\n")
	for _, c := range canaries {
		if i := strings.Index(all, c); i >= 0 {
			t.Fatalf("output reveals the DPoP key (%q):\n...%s...", c, all[max(0, i-200):min(len(all), i+100)])
		}
	}
	if !strings.Contains(logs.String(), "DPoP nonce") || len(outputs) < 50 {
		t.Fatalf("the canary did not run the DPoP paths:\n%s", logs)
	}
}

func pemOf(t testing.TB, key crypto.Signer) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func ed25519Key(t testing.TB) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
