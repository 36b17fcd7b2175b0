// Tests of DPoP at the API: the proof-adding transport, its nonce and 401
// recovery, other consumers of the source, and the key never leaking.

package m2mtoken

import (
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
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

	"golang.org/x/oauth2"

	"github.com/m2mtoken/m2mtoken/m2mtest"
)

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
	collect(s.c.cfg, &s.c.cfg, s, s.Stats(), tr, h, err, s.DPoPThumbprint(), NewFileCache(dir))
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
