package m2mtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/m2mtoken/m2mtoken/internal/dpop"
)

func dpopKey(t *testing.T) (*dpop.Key, *ecdsa.PrivateKey) {
	t.Helper()
	pk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := dpop.NewKey(pk, "")
	if err != nil {
		t.Fatal(err)
	}
	return k, pk
}

// postDPoP posts a client-credentials request with the proof (if any).
func postDPoP(t *testing.T, s *Server, proof string, form map[string]string) answer {
	t.Helper()
	vals := good()
	for k, v := range form {
		vals.Set(k, v)
	}
	req, _ := http.NewRequest("POST", s.TokenURL(), strings.NewReader(vals.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if proof != "" {
		req.Header.Set("DPoP", proof)
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	return answer{resp.StatusCode, resp.Header, body}
}

func tokenProof(t *testing.T, k *dpop.Key, s *Server, nonce string) string {
	t.Helper()
	p, err := k.Proof("POST", s.TokenURL(), nonce, "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDPoPTokenEndpoint(t *testing.T) {
	s := NewServer(
		Client{ID: "svc", Secret: "pw", Audiences: []string{aud}, RequireDPoP: true},
		Client{ID: "plain", Secret: "pw", Audiences: []string{aud}, IgnoreDPoP: true},
	)
	defer s.Close()
	k, pk := dpopKey(t)

	if a := postDPoP(t, s, "", nil); a.status != 400 || a.body["error"] != "invalid_request" {
		t.Fatalf("no proof for a client that requires DPoP: %d %v", a.status, a.body)
	}
	proof := tokenProof(t, k, s, "")
	a := postDPoP(t, s, proof, nil)
	if a.status != 200 || a.body["token_type"] != "DPoP" {
		t.Fatalf("%d %v", a.status, a.body)
	}
	claims := verify(t, s, s.Client(), a.body["access_token"].(string))
	jwk := jose.JSONWebKey{Key: pk.Public()}
	tp, _ := jwk.Thumbprint(crypto.SHA256)
	cnf, _ := claims["cnf"].(map[string]any)
	if cnf["jkt"] != base64.RawURLEncoding.EncodeToString(tp) {
		t.Fatalf("cnf %v, want go-jose's thumbprint", cnf)
	}
	if _, err := s.Verify(a.body["access_token"].(string), aud); err == nil || !strings.Contains(err.Error(), "DPoP-bound") {
		t.Fatalf("Verify accepted a bound token: %v", err)
	}
	if a := postDPoP(t, s, proof, nil); a.status != 400 || a.body["error"] != "invalid_dpop_proof" || !strings.Contains(a.body["error_description"].(string), "replay") {
		t.Fatalf("replayed proof: %d %v", a.status, a.body)
	}
	wrongURL, _ := k.Proof("POST", s.URL+"/token", "", "", time.Now())
	wrongMethod, _ := k.Proof("GET", s.TokenURL(), "", "", time.Now())
	old, _ := k.Proof("POST", s.TokenURL(), "", "", time.Now().Add(-5*time.Minute))
	for name, p := range map[string]string{"htu": wrongURL, "htm": wrongMethod, "iat": old, "garbage": "a.b.c"} {
		if a := postDPoP(t, s, p, nil); a.status != 400 || a.body["error"] != "invalid_dpop_proof" {
			t.Errorf("bad %s: %d %v", name, a.status, a.body)
		}
	}
	// A client whose API does not constrain tokens: the proof is checked,
	// the token is Bearer.
	a = postDPoP(t, s, tokenProof(t, k, s, ""), map[string]string{"client_id": "plain"})
	if a.status != 200 || a.body["token_type"] != "Bearer" {
		t.Fatalf("IgnoreDPoP: %d %v", a.status, a.body)
	}
	if _, err := s.Verify(a.body["access_token"].(string), aud); err != nil {
		t.Fatal(err)
	}

	// Nonces.
	s.RequireDPoPNonce(true, false)
	a = postDPoP(t, s, tokenProof(t, k, s, ""), nil)
	nonce := a.header.Get("DPoP-Nonce")
	if a.status != 400 || a.body["error"] != "use_dpop_nonce" || nonce == "" {
		t.Fatalf("no nonce: %d %v %q", a.status, a.body, nonce)
	}
	if a := postDPoP(t, s, tokenProof(t, k, s, "made-up"), nil); a.status != 400 || a.body["error"] != "use_dpop_nonce" {
		t.Fatalf("wrong nonce: %d %v", a.status, a.body)
	}
	if a := postDPoP(t, s, tokenProof(t, k, s, nonce), nil); a.status != 200 || a.header.Get("DPoP-Nonce") != nonce {
		t.Fatalf("with the nonce: %d %v", a.status, a.body)
	}
	s.RotateDPoPNonces()
	if a := postDPoP(t, s, tokenProof(t, k, s, nonce), nil); a.status != 200 || a.header.Get("DPoP-Nonce") == nonce {
		t.Fatalf("previous nonce after one rotation: %d %v", a.status, a.body)
	}
	s.RotateDPoPNonces()
	if a := postDPoP(t, s, tokenProof(t, k, s, nonce), nil); a.status != 400 || a.body["error"] != "use_dpop_nonce" {
		t.Fatalf("nonce two rotations old: %d %v", a.status, a.body)
	}
}

// apiCall sends one request to a Protect'ed API.
func apiCall(t *testing.T, url, method, auth, proof string) (int, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if proof != "" {
		req.Header.Set("DPoP", proof)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

func TestDPoPProtect(t *testing.T) {
	s := NewServer(Client{ID: "svc", Secret: "pw", Audiences: []string{aud}})
	defer s.Close()
	api := httptest.NewServer(s.Protect(aud, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	defer api.Close()
	k, _ := dpopKey(t)
	other, _ := dpopKey(t)
	a := postDPoP(t, s, tokenProof(t, k, s, ""), nil)
	tok := a.body["access_token"].(string)
	bearer := postDPoP(t, s, "", nil).body["access_token"].(string)
	url := api.URL + "/v1/things"
	proof := func(k *dpop.Key, method, u, nonce, ath string, iat time.Time) string {
		p, err := k.Proof(method, u, nonce, ath, iat)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	now := time.Now()
	good := proof(k, "GET", url, "", dpop.ATH(tok), now)
	if code, _ := apiCall(t, url+"?q=1", "GET", "DPoP "+tok, good); code != 200 {
		t.Fatalf("good DPoP request: %d", code)
	}
	for _, c := range []struct {
		name, auth, proof, code string
	}{
		{"replayed proof", "DPoP " + tok, good, "invalid_dpop_proof"},
		{"bound token as Bearer", "Bearer " + tok, "", "invalid_token"},
		{"bound token as Bearer with a proof", "Bearer " + tok, proof(k, "GET", url, "", dpop.ATH(tok), now), "invalid_token"},
		{"no proof", "DPoP " + tok, "", "invalid_dpop_proof"},
		{"other key", "DPoP " + tok, proof(other, "GET", url, "", dpop.ATH(tok), now), "invalid_token"},
		{"wrong ath", "DPoP " + tok, proof(k, "GET", url, "", dpop.ATH(bearer), now), "invalid_dpop_proof"},
		{"no ath", "DPoP " + tok, proof(k, "GET", url, "", "", now), "invalid_dpop_proof"},
		{"wrong htm", "DPoP " + tok, proof(k, "POST", url, "", dpop.ATH(tok), now), "invalid_dpop_proof"},
		{"wrong htu", "DPoP " + tok, proof(k, "GET", api.URL+"/v1/other", "", dpop.ATH(tok), now), "invalid_dpop_proof"},
		{"future iat", "DPoP " + tok, proof(k, "GET", url, "", dpop.ATH(tok), now.Add(2*time.Minute)), "invalid_dpop_proof"},
		{"unbound token as DPoP", "DPoP " + bearer, proof(k, "GET", url, "", dpop.ATH(bearer), now), "invalid_token"},
	} {
		code, h := apiCall(t, url, "GET", c.auth, c.proof)
		chs := dpop.ParseChallenges(h.Values("WWW-Authenticate"))
		got, _ := dpop.Error(chs, "DPoP")
		if code != 401 || got != c.code {
			t.Errorf("%s: %d %q, want 401 %s", c.name, code, h.Values("WWW-Authenticate"), c.code)
		}
	}
	if code, _ := apiCall(t, url, "GET", "Bearer "+bearer, ""); code != 200 {
		t.Fatalf("an unbound Bearer token: %d", code)
	}

	// Nonces at the API: the API's own, never the token endpoint's.
	s.RequireDPoPNonce(true, true)
	code, h := apiCall(t, url, "GET", "DPoP "+tok, proof(k, "GET", url, "", dpop.ATH(tok), time.Now()))
	apiNonce := h.Get("DPoP-Nonce")
	if e, _ := dpop.Error(dpop.ParseChallenges(h.Values("WWW-Authenticate")), "DPoP"); code != 401 || e != "use_dpop_nonce" || apiNonce == "" {
		t.Fatalf("no nonce at the API: %d %v", code, h)
	}
	tokenNonce := postDPoP(t, s, tokenProof(t, k, s, ""), nil).header.Get("DPoP-Nonce")
	if tokenNonce == "" || tokenNonce == apiNonce {
		t.Fatalf("token endpoint nonce %q, API nonce %q", tokenNonce, apiNonce)
	}
	if code, _ := apiCall(t, url, "GET", "DPoP "+tok, proof(k, "GET", url, tokenNonce, dpop.ATH(tok), time.Now())); code != 401 {
		t.Fatal("the API took the token endpoint's nonce")
	}
	if code, _ := apiCall(t, url, "GET", "DPoP "+tok, proof(k, "GET", url, apiNonce, dpop.ATH(tok), time.Now())); code != 200 {
		t.Fatalf("with the API's nonce: %d", code)
	}
}
