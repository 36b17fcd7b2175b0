// Tests of DPoP at the token endpoint: the proof, nonces, a Bearer answer,
// configuration errors, and which cached tokens a DPoP source may adopt.

package m2mtoken

import (
	"crypto"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
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
	if n := strings.Count(logs.String(), "answered a Bearer token although a DPoP proof was sent: the API does not constrain tokens; using it as a bearer token (set Config.RequireDPoP to refuse it)"); n != 1 {
		t.Fatalf("warning logged %d times:\n%s", n, logs)
	}

	s2, _ := testSource(t, e, func(c *Config) { c.DPoPKey, c.RequireDPoP, c.MaxAttempts = ecKey(t, elliptic.P256()), true, 1 })
	_, err = s2.Token()
	if err == nil || !strings.Contains(err.Error(), "and Config.RequireDPoP is set: make the API require sender-constrained (DPoP) tokens, or unset Config.RequireDPoP") {
		t.Fatalf("RequireDPoP: %v", err)
	}

	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool { dpopAnswer(w, n); return true })
	s3, _ := testSource(t, e, func(c *Config) { c.MaxAttempts = 1 })
	if _, err := s3.Token(); err == nil || !strings.Contains(err.Error(), "a DPoP-bound token to a request without a DPoP proof: give the client a DPoP key with Config.DPoPKey") {
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
