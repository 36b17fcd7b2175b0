package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/m2mtoken/m2mtoken"
)

// exchange is one token request as sent and answered.
type exchange struct {
	proof  string
	status int
	nonce  string
}

// tap records the DPoP proof of every token request and its answer.
type tap struct {
	mu  sync.Mutex
	log []exchange
}

func (tp *tap) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	tp.mu.Lock()
	tp.log = append(tp.log, exchange{r.Header.Get("DPoP"), resp.StatusCode, resp.Header.Get("DPoP-Nonce")})
	tp.mu.Unlock()
	return resp, nil
}

func (tp *tap) exchanges() []exchange {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return append([]exchange(nil), tp.log...)
}

func thumbprint(t *testing.T, key crypto.Signer) string {
	jwk := jose.JSONWebKey{Key: key.Public()}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}

// TestInteropDPoP fetches and refreshes DPoP-bound 2-second tokens from
// oidc-provider for 5 s, with and without required nonces, with an ES256
// and an Ed25519 key, for a client that must use DPoP and one that may.
// go-jose checks, independently of m2mtoken, that every proof verifies
// under its embedded key, which is ours, and that each token's cnf.jkt is
// our key's RFC 7638 thumbprint.
func TestInteropDPoP(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	for _, nonces := range []bool{false, true} {
		env := []string{"DPOP_NONCE=0"}
		if nonces {
			env = []string{"DPOP_NONCE=1"}
		}
		p := startOrSkip(t, 2*time.Second, env...)
		for _, c := range []struct {
			name, client string
			key          crypto.Signer
		}{{"ES256", "interop-dpop", ec}, {"EdDSA", "interop-post", ed}} {
			name := c.name + "/" + c.client
			if nonces {
				name += "/nonces"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				tp := &tap{}
				cfg := config(p.tokenURL, c.client, "interop-secret", resource)
				cfg.DPoPKey, cfg.RequireDPoP, cfg.HTTPClient = c.key, true, &http.Client{Transport: tp}
				src, err := m2mtoken.New(cfg)
				if err != nil {
					t.Fatal(err)
				}
				defer src.Close()
				seen := map[string]bool{}
				for stop := time.Now().Add(5 * time.Second); time.Now().Before(stop); time.Sleep(20 * time.Millisecond) {
					tok, err := src.Token()
					if err != nil {
						t.Fatal(err)
					}
					if tok.Type() != "DPoP" {
						t.Fatalf("token type %q", tok.Type())
					}
					if !seen[tok.AccessToken] {
						seen[tok.AccessToken] = true
						cl := claims(t, tok.AccessToken)
						cnf, _ := cl["cnf"].(map[string]any)
						if cnf["jkt"] != thumbprint(t, c.key) {
							t.Fatalf("cnf %v, want go-jose's thumbprint %s", cl["cnf"], thumbprint(t, c.key))
						}
					}
				}
				ex := tp.exchanges()
				st := src.Stats()
				t.Logf("%d tokens, %d token requests, statuses %v", len(seen), st.TokenRequests, statuses(ex))
				if len(seen) < 2 || st.Failures != 0 {
					t.Fatalf("%d tokens, %d failures", len(seen), st.Failures)
				}
				lastNonce := ""
				for i, e := range ex {
					cl := verifyProof(t, e.proof, c.key)
					if cl["htm"] != "POST" || cl["htu"] != p.tokenURL {
						t.Fatalf("proof %d claims %v", i, cl)
					}
					if nonces && i > 0 && cl["nonce"] != lastNonce {
						t.Fatalf("proof %d nonce %v, want %q", i, cl["nonce"], lastNonce)
					}
					if e.nonce != "" {
						lastNonce = e.nonce
					}
				}
				if nonces && (ex[0].status != 400 || ex[1].status != 200) {
					t.Fatalf("with nonces: statuses %v", statuses(ex))
				}
				if !nonces && ex[0].status != 200 {
					t.Fatalf("without nonces: statuses %v", statuses(ex))
				}
			})
		}
	}
}

// TestInteropDPoPRequired: the client that must use DPoP gets nothing
// without a key.
func TestInteropDPoPRequired(t *testing.T) {
	p := startOrSkip(t, time.Minute)
	_, err := fetch(t.Context(), p.tokenURL, "interop-dpop", "interop-secret", resource)
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response.StatusCode != 400 {
		t.Fatalf("without a DPoP key: %v", err)
	}
	t.Logf("without a DPoP key: %v", err)
}

func statuses(ex []exchange) []int {
	var s []int
	for _, e := range ex {
		s = append(s, e.status)
	}
	return s
}

// verifyProof checks a proof with go-jose: typ, a public jwk that is key's,
// and the signature under it.
func verifyProof(t *testing.T, proof string, key crypto.Signer) map[string]any {
	t.Helper()
	jws, err := jose.ParseSignedCompact(proof, []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA})
	if err != nil {
		t.Fatalf("proof: %v", err)
	}
	h := jws.Signatures[0].Header
	if h.ExtraHeaders["typ"] != "dpop+jwt" || h.JSONWebKey == nil || !h.JSONWebKey.IsPublic() {
		t.Fatalf("proof header %+v", h)
	}
	tp, _ := h.JSONWebKey.Thumbprint(crypto.SHA256)
	if base64.RawURLEncoding.EncodeToString(tp) != thumbprint(t, key) {
		t.Fatal("the proof's jwk is not our key")
	}
	payload, err := jws.Verify(h.JSONWebKey)
	if err != nil {
		t.Fatalf("go-jose: %v", err)
	}
	var cl map[string]any
	json.Unmarshal(payload, &cl)
	return cl
}
