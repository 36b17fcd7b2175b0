package m2mtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/m2mtoken/m2mtoken/internal/jwt"
)

const (
	k8sIssuer = "https://kubernetes.default.svc.cluster.local"
	k8sSub    = "system:serviceaccount:prod:billing"
)

func assertionForm(clientID, typ, assertion string) url.Values {
	f := url.Values{"grant_type": {"client_credentials"}, "audience": {aud}, "client_assertion_type": {typ}, "client_assertion": {assertion}}
	if clientID != "" {
		f.Set("client_id", clientID)
	}
	return f
}

// TestTrustPlatform: a client that trusts a Kubernetes cluster's
// service-account tokens gets tokens with them, with or without client_id,
// reusing one token until it expires; every mismatch is refused with
// 401 invalid_client and a description that says what does not match.
func TestTrustPlatform(t *testing.T) {
	s := testServer(t)
	clk := newFakeNow()
	s.SetClock(clk.now)
	k8s := NewPlatform(k8sIssuer)
	k8s.SetClock(clk.now)
	if err := s.Trust("svc", k8s.Trust(k8sSub)); err != nil {
		t.Fatal(err)
	}
	c := s.Client()
	tok, err := k8s.Token(k8sSub, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range []string{"svc", "svc", ""} {
		if a := post(t, c, s.TokenURL(), assertionForm(id, jwtBearer, tok)); a.status != 200 {
			t.Fatalf("request %d (client_id %q): %d %v", i, id, a.status, a.body)
		}
	}
	if n := s.TokensIssued("svc"); n != 3 {
		t.Errorf("%d tokens issued, want 3", n)
	}
	// The client's secret still works beside it.
	if a := post(t, c, s.TokenURL(), good()); a.status != 200 {
		t.Errorf("secret beside the trust: %d", a.status)
	}

	other := NewPlatform("https://token.actions.githubusercontent.com")
	other.SetClock(clk.now)
	forger := NewPlatform(k8sIssuer) // the same issuer's name, another key
	forger.SetClock(clk.now)
	sign := func(p *Platform, mod func(map[string]any)) string {
		now := clk.now()
		claims := map[string]any{"iss": p.Issuer, "sub": k8sSub, "aud": DefaultAssertionAudience, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		if mod != nil {
			mod(claims)
		}
		tok, err := p.Sign(claims)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	forger.init()
	forged, err := jwt.Sign(forger.key, jwt.ES256, "", map[string]any{"iss": k8sIssuer, "sub": k8sSub, "aud": DefaultAssertionAudience, "exp": clk.now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, id, assertion, want string
	}{
		{"other issuer", "svc", sign(other, nil), `issuer "https://token.actions.githubusercontent.com" is not trusted by client "svc"`},
		{"other subject", "svc", sign(k8s, func(m map[string]any) { m["sub"] = "system:serviceaccount:prod:intruder" }),
			`subject "system:serviceaccount:prod:intruder" does not match the subject client "svc" trusts for issuer "` + k8sIssuer + `"`},
		{"other audience", "svc", sign(k8s, func(m map[string]any) { m["aud"] = "https://elsewhere/" }), `audience must be "api://AzureADTokenExchange"`},
		{"audience list", "svc", sign(k8s, func(m map[string]any) { m["aud"] = []string{"x", DefaultAssertionAudience} }), ""},
		{"forged", "svc", sign(forger, nil), `kid "` + forger.Key().ID + `" names none of the keys trusted for issuer ` + k8sIssuer},
		{"forged, no kid", "svc", forged, "signature does not verify"},
		{"no exp", "svc", sign(k8s, func(m map[string]any) { delete(m, "exp") }), "has no exp"},
		{"not yet valid", "svc", sign(k8s, func(m map[string]any) { m["nbf"] = clk.now().Add(time.Minute).Unix() }), "is not valid before 2030-01-01T00:01:00Z (nbf)"},
		{"nbf within skew", "svc", sign(k8s, func(m map[string]any) { m["nbf"] = clk.now().Add(5 * time.Second).Unix() }), ""},
		{"iat ahead", "svc", sign(k8s, func(m map[string]any) { m["iat"] = clk.now().Add(time.Hour).Unix() }), "iat is in the future"},
		{"not a JWT", "svc", "abc", "is not a JWT"},
		{"garbage header", "svc", "bm90." + strings.Split(tok, ".")[1] + ".c2ln", "header does not parse"},
		{"jwt-spiffe for a Kubernetes token", "svc", tok, "a jwt-spiffe assertion is a JWT-SVID"},
		{"no client_id, untrusted", "", sign(other, nil), "Unauthorized"},
		{"another client", "spa", tok, `client "spa" has no registered public key and trusts no issuer of assertions`},
	} {
		typ := jwtBearer
		if strings.HasPrefix(tt.name, "jwt-spiffe") {
			typ = jwtSpiffe
		}
		a := post(t, c, s.TokenURL(), assertionForm(tt.id, typ, tt.assertion))
		desc, _ := a.body["error_description"].(string)
		switch {
		case tt.want == "" && a.status != 200:
			t.Errorf("%s: %d %v, want 200", tt.name, a.status, a.body)
		case tt.want == "Unauthorized" && (a.status != 401 || a.body["error"] != "access_denied"):
			t.Errorf("%s: %d %v, want 401 access_denied", tt.name, a.status, a.body)
		case tt.want != "" && tt.want != "Unauthorized" && (a.status != 401 || a.body["error"] != "invalid_client" || !strings.Contains(desc, "Invalid client assertion: "+tt.want) && !strings.Contains(desc, tt.want)):
			t.Errorf("%s: %d %v, want 401 invalid_client %q", tt.name, a.status, a.body, tt.want)
		}
	}

	// An hour later the token has expired: the answer says when.
	clk.advance(time.Hour + 2*time.Second)
	a := post(t, c, s.TokenURL(), assertionForm("svc", jwtBearer, tok))
	if want := "Invalid client assertion: client_assertion expired at 2030-01-01T01:00:00Z, 2s ago"; a.status != 401 || a.body["error_description"] != want {
		t.Errorf("expired: %d %v, want %q", a.status, a.body, want)
	}

	// The platform's keys rotate: trusting the issuer again with the new
	// keys replaces the old ones.
	if err := s.Trust("svc", TrustedIssuer{Issuer: k8sIssuer, Subject: k8sSub, Keys: []Key{forger.Key()}}); err != nil {
		t.Fatal(err)
	}
	if a := post(t, c, s.TokenURL(), assertionForm("svc", jwtBearer, sign(forger, nil))); a.status != 200 {
		t.Errorf("new key: %d %v", a.status, a.body)
	}
	if a := post(t, c, s.TokenURL(), assertionForm("svc", jwtBearer, sign(k8s, nil))); a.status != 401 {
		t.Errorf("old key after the rotation: %d %v", a.status, a.body)
	}
}

// TestTrustSPIFFE: JWT-SVIDs (no iss, no jti) of a trusted trust domain
// are accepted with jwt-spiffe or jwt-bearer and reused until they expire;
// a SPIFFE ID of another trust domain is refused by name.
func TestTrustSPIFFE(t *testing.T) {
	s := testServer(t)
	const id = "spiffe://example.org/ns/prod/sa/billing"
	td := NewPlatform("spiffe://example.org")
	if err := s.Trust("svc", TrustedIssuer{Issuer: "spiffe://example.org/", Subject: id, Audience: s.Issuer(), Keys: []Key{td.Key()}}); err != nil {
		t.Fatal(err)
	}
	svid, err := td.Token(id, s.Issuer(), 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var cl map[string]any
	jwt.Unverified(svid, &cl)
	if cl["iss"] != nil || cl["jti"] != nil || cl["sub"] != id {
		t.Errorf("a JWT-SVID's claims: %v", cl)
	}
	c := s.Client()
	for i, typ := range []string{jwtSpiffe, jwtSpiffe, jwtBearer} {
		if a := post(t, c, s.TokenURL(), assertionForm("", typ, svid)); a.status != 200 {
			t.Fatalf("request %d: %d %v", i, a.status, a.body)
		}
	}
	elsewhere := NewPlatform("spiffe://other.org")
	foreign, _ := elsewhere.Token("spiffe://other.org/billing", s.Issuer(), time.Minute)
	a := post(t, c, s.TokenURL(), assertionForm("svc", jwtSpiffe, foreign))
	if want := `Invalid client assertion: the trust domain of subject "spiffe://other.org/billing" is not trusted by client "svc"`; a.status != 401 || a.body["error_description"] != want {
		t.Errorf("another trust domain: %d %v, want %q", a.status, a.body, want)
	}
	a = post(t, c, s.TokenURL(), assertionForm("svc", "urn:example:other", svid))
	if a.status != 400 || !strings.Contains(a.body["error_description"].(string), jwtSpiffe) {
		t.Errorf("another assertion type: %d %v", a.status, a.body)
	}
}

// TestTrustRefuses: what Trust refuses, in words that say what to fix.
func TestTrustRefuses(t *testing.T) {
	s := testServer(t)
	p := NewPlatform(k8sIssuer)
	for _, tt := range []struct {
		id   string
		t    TrustedIssuer
		want string
	}{
		{"ghost", p.Trust(k8sSub), `no client "ghost"`},
		{"svc", TrustedIssuer{Subject: k8sSub, Keys: []Key{p.Key()}}, "Issuer is empty"},
		{"svc", TrustedIssuer{Issuer: k8sIssuer, Keys: []Key{p.Key()}}, "Subject is empty"},
		{"svc", TrustedIssuer{Issuer: k8sIssuer, Subject: k8sSub}, "Keys is empty"},
		{"svc", TrustedIssuer{Issuer: k8sIssuer, Subject: k8sSub, Keys: []Key{{PublicKey: []byte("x")}}}, "unsupported key type"},
		{"svc", TrustedIssuer{Issuer: "spiffe://example.org/ns", Subject: "spiffe://example.org/ns/a", Keys: []Key{p.Key()}}, "with no path"},
		{"svc", TrustedIssuer{Issuer: "spiffe://example.org", Subject: "spiffe://other.org/a", Keys: []Key{p.Key()}}, "is not a SPIFFE ID in spiffe://example.org"},
	} {
		if err := s.Trust(tt.id, tt.t); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Trust(%q, %+v) = %v, want %q", tt.id, tt.t, err, tt.want)
		}
	}
	for i := range maxTrusts {
		if err := s.Trust("svc", p.Trust(k8sSub+string(rune('a'+i)))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Trust("svc", p.Trust("one-more")); err == nil || !strings.Contains(err.Error(), "Entra ID's limit") {
		t.Errorf("a 21st trust: %v", err)
	}
}

// TestPlatformJWKS: the platform's JWKS is a key set an independent
// library (go-jose) reads, and its tokens verify with it.
func TestPlatformJWKS(t *testing.T) {
	var p Platform // the zero Platform works
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(p.JWKS(), &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("JWKS %s: %v", p.JWKS(), err)
	}
	k := set.Keys[0]
	if k.KeyID != p.Key().ID || k.Use != "sig" || k.Algorithm != "ES256" || !k.IsPublic() {
		t.Errorf("JWK %+v", k)
	}
	tok, err := p.Token("me", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var cl map[string]any
	if _, err := jwt.Verify(tok, k.Key, &cl); err != nil {
		t.Fatal(err)
	}
	if cl["iss"] != "" || cl["aud"] != DefaultAssertionAudience || cl["exp"].(float64)-cl["iat"].(float64) != 3600 || cl["jti"] == "" {
		t.Errorf("claims %v", cl)
	}
}

// TestParseKeys: PEM public keys and certificates, a JWKS and a single
// JWK are read; keys for other uses are left out; a private key is
// refused with the command that gives its public half.
func TestParseKeys(t *testing.T) {
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pkix1, _ := x509.MarshalPKIXPublicKey(ek.Public())
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sa"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, rk.Public(), rk)
	if err != nil {
		t.Fatal(err)
	}
	pemOf := func(typ string, b []byte) string { return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b})) }
	p := NewPlatform("x")
	var set struct{ Keys []map[string]any }
	json.Unmarshal(p.JWKS(), &set)
	jwkOnly := set.Keys[0]
	one, _ := json.Marshal(jwkOnly)
	enc := map[string]any{}
	for k, v := range jwkOnly {
		enc[k] = v
	}
	enc["use"], enc["kid"] = "x509-svid", "bundle-ca"
	mixed, _ := json.Marshal(map[string]any{"keys": []any{enc, jwkOnly}})
	ecPriv, _ := x509.MarshalECPrivateKey(ek)
	for _, tt := range []struct {
		name, data string
		ids        []string // the keys' IDs; nil for an error
		want       string
	}{
		{"PEM", pemOf("PUBLIC KEY", pkix1) + pemOf("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&rk.PublicKey)), []string{"", ""}, ""},
		{"certificate", pemOf("CERTIFICATE", der), []string{""}, ""},
		{"JWKS", string(p.JWKS()), []string{p.Key().ID}, ""},
		{"one JWK", string(one), []string{p.Key().ID}, ""},
		{"a SPIFFE bundle", string(mixed), []string{p.Key().ID}, ""},
		{"private key", pemOf("EC PRIVATE KEY", ecPriv), nil, "openssl pkey -in KEY -pubout"},
		{"nothing", "hello", nil, "no public key in it"},
		{"empty JWKS", `{"keys":[]}`, nil, "no signing key in the JWKS"},
		{"bad JSON", `{"keys":`, nil, "does not parse"},
		{"small RSA", `{"keys":[{"kty":"RSA","kid":"a","n":"AQAB","e":"AQAB"}]}`, nil, `kid "a": the RSA key is under 2048 bits`},
	} {
		keys, err := ParseKeys([]byte(tt.data))
		if tt.ids == nil {
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
			}
			continue
		}
		if err != nil || len(keys) != len(tt.ids) {
			t.Errorf("%s: %+v, %v", tt.name, keys, err)
			continue
		}
		for i, k := range keys {
			if k.ID != tt.ids[i] || checkKey(k) != nil {
				t.Errorf("%s: key %d %+v", tt.name, i, k)
			}
		}
	}
}
