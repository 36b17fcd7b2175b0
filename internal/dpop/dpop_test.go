package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
)

func keys(t testing.TB) map[string]crypto.Signer {
	t.Helper()
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]crypto.Signer{ES256: ek, PS256: rk, RS256: rk, EdDSA: ed}
}

// TestProofVerifiesWithGoJose: every algorithm's proof verifies with
// go-jose using the key embedded in its header, carries exactly the
// claims asked for, and the thumbprint is go-jose's RFC 7638 one.
func TestProofVerifiesWithGoJose(t *testing.T) {
	for alg, signer := range keys(t) {
		t.Run(alg, func(t *testing.T) {
			k, err := NewKey(signer, alg)
			if err != nil {
				t.Fatal(err)
			}
			iat := time.Unix(1900000000, 0)
			proof, err := k.Proof("POST", "https://as.example.com/oauth/token", `n"once`, ATH("tok"), iat)
			if err != nil {
				t.Fatal(err)
			}
			jws, err := jose.ParseSignedCompact(proof, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
			if err != nil {
				t.Fatal(err)
			}
			h := jws.Signatures[0].Header
			if h.ExtraHeaders["typ"] != "dpop+jwt" || h.Algorithm != alg || h.JSONWebKey == nil || !h.JSONWebKey.IsPublic() {
				t.Fatalf("header %+v", h)
			}
			payload, err := jws.Verify(h.JSONWebKey)
			if err != nil {
				t.Fatalf("go-jose: %v", err)
			}
			var claims map[string]any
			json.Unmarshal(payload, &claims)
			jti, _ := claims["jti"].(string)
			delete(claims, "jti")
			want := map[string]any{"htm": "POST", "htu": "https://as.example.com/oauth/token", "iat": float64(1900000000), "nonce": `n"once`, "ath": ATH("tok")}
			if diff := cmp.Diff(want, claims); diff != "" || len(jti) < 20 {
				t.Fatalf("claims (-want +got):\n%s jti %q", diff, jti)
			}
			tp, _ := h.JSONWebKey.Thumbprint(crypto.SHA256)
			if got := base64.RawURLEncoding.EncodeToString(tp); got != k.Thumbprint() {
				t.Fatalf("thumbprint %s, go-jose %s", k.Thumbprint(), got)
			}
			p, err := Verify(proof, []string{alg})
			if err != nil || p.JKT != k.Thumbprint() || p.Nonce != `n"once` {
				t.Fatalf("Verify: %+v %v", p, err)
			}
			again, _ := k.Proof("POST", "https://as.example.com/oauth/token", "", "", iat)
			p2, _ := Verify(again, []string{alg})
			if p2 == nil || p2.JTI == jti || p2.Nonce != "" || p2.ATH != "" {
				t.Fatalf("second proof %+v", p2)
			}
		})
	}
}

// TestATH is RFC 9449's example (section 7.1).
func TestATH(t *testing.T) {
	if got := ATH("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"); got != "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo" {
		t.Fatalf("ATH = %s", got)
	}
}

// TestThumbprintRFC7638 is the RFC's own example key.
func TestThumbprintRFC7638(t *testing.T) {
	n := "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
	pub, jkt, err := ParseJWK(map[string]json.RawMessage{"kty": json.RawMessage(`"RSA"`), "n": json.RawMessage(`"` + n + `"`), "e": json.RawMessage(`"AQAB"`)})
	if err != nil || pub == nil || jkt != "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs" {
		t.Fatalf("%s %v", jkt, err)
	}
}

func TestNewKeyRefuses(t *testing.T) {
	k := keys(t)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	for name, c := range map[string]struct {
		key crypto.Signer
		alg string
	}{
		"nil": {nil, ""}, "P-384": {p384, ""}, "small RSA": {small, ""}, "ES256 with RSA": {k[RS256], ES256},
		"RS256 with EC": {k[ES256], RS256}, "HS256": {k[ES256], "HS256"}, "ES256 with Ed25519": {k[EdDSA], ES256},
	} {
		if _, err := NewKey(c.key, c.alg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for alg, def := range map[string]string{ES256: ES256, PS256: PS256, EdDSA: EdDSA} {
		kk, err := NewKey(k[alg], "")
		if err != nil || kk.Alg() != def {
			t.Errorf("default for %s: %v %v", alg, kk, err)
		}
	}
}

func TestVerifyRefuses(t *testing.T) {
	ek := keys(t)[ES256].(*ecdsa.PrivateKey)
	k, _ := NewKey(ek, "")
	good, _ := k.Proof("GET", "https://api/x", "", "", time.Now())
	parts := strings.Split(good, ".")
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ko, _ := NewKey(other, "")
	otherProof, _ := ko.Proof("GET", "https://api/x", "", "", time.Now())
	hdr := func(h string) string { return base64.RawURLEncoding.EncodeToString([]byte(h)) }
	for name, proof := range map[string]string{
		"two parts":       parts[0] + "." + parts[1],
		"foreign sig":     parts[0] + "." + parts[1] + "." + strings.Split(otherProof, ".")[2],
		"typ JWT":         hdr(`{"typ":"JWT","alg":"ES256","jwk":`+k.JWK()+`}`) + "." + parts[1] + "." + parts[2],
		"alg none":        hdr(`{"typ":"dpop+jwt","alg":"none","jwk":`+k.JWK()+`}`) + "." + parts[1] + ".",
		"no jwk":          hdr(`{"typ":"dpop+jwt","alg":"ES256"}`) + "." + parts[1] + "." + parts[2],
		"private jwk":     hdr(`{"typ":"dpop+jwt","alg":"ES256","jwk":`+strings.TrimSuffix(k.JWK(), "}")+`,"d":"AAAA"}}`) + "." + parts[1] + "." + parts[2],
		"not base64":      "!!." + parts[1] + "." + parts[2],
		"tampered claims": parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"jti":"x","htm":"GET","htu":"https://api/x","iat":1}`)) + "." + parts[2],
	} {
		if _, err := Verify(proof, []string{ES256}); err == nil {
			t.Errorf("%s: verified", name)
		}
	}
	p, _ := Verify(good, []string{ES256})
	now := time.Now()
	for name, err := range map[string]error{
		"method": p.Check("POST", "https://api/x", now, time.Minute),
		"url":    p.Check("GET", "https://api/y", now, time.Minute),
		"old":    p.Check("GET", "https://api/x", now.Add(2*time.Minute), time.Minute),
		"future": p.Check("GET", "https://api/x", now.Add(-2*time.Minute), time.Minute),
	} {
		if err == nil {
			t.Errorf("Check %s: passed", name)
		}
	}
	if err := p.Check("GET", "https://api/x", now, time.Minute); err != nil {
		t.Fatal(err)
	}
}

func TestHTU(t *testing.T) {
	for in, want := range map[string][2]string{
		"https://API.example.com:8443/v1/things?x=1#f": {"https://api.example.com:8443/v1/things", "https://api.example.com:8443"},
		"HTTP://h":                  {"http://h/", "http://h"},
		"https://u:p@h/a%2Fb?q":     {"https://h/a%2Fb", "https://h"},
		"https://h/path with space": {"https://h/path%20with%20space", "https://h"},
	} {
		u, err := url.Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		htu, origin := HTU(u)
		if htu != want[0] || origin != want[1] {
			t.Errorf("HTU(%q) = %q %q, want %q", in, htu, origin, want)
		}
	}
}

func TestParseNonce(t *testing.T) {
	for in, want := range map[string]string{
		"eyJ7S_zG.eyJH0-Z.HX4w-7v": "eyJ7S_zG.eyJH0-Z.HX4w-7v", " abc ": "abc", "": "", "a b": "", `a"b`: "", `a\b`: "", "é": "", "a\x00": "",
		strings.Repeat("n", MaxNonce): strings.Repeat("n", MaxNonce), strings.Repeat("n", MaxNonce+1): "",
	} {
		got, ok := ParseNonce(in)
		if got != want || ok != (want != "") {
			t.Errorf("ParseNonce(%.20q) = %q %v", in, got, ok)
		}
	}
}

func TestParseChallenges(t *testing.T) {
	type ch = Challenge
	for _, tt := range []struct {
		in   []string
		want []Challenge
	}{
		{[]string{`DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"`},
			[]ch{{Scheme: "DPoP", Params: map[string]string{"error": "use_dpop_nonce", "error_description": "Resource server requires nonce in DPoP proof"}}}},
		{[]string{`Bearer realm="api", error="invalid_token", DPoP algs="ES256 PS256", error=invalid_token`},
			[]ch{{Scheme: "Bearer", Params: map[string]string{"realm": "api", "error": "invalid_token"}}, {Scheme: "DPoP", Params: map[string]string{"algs": "ES256 PS256", "error": "invalid_token"}}}},
		{[]string{`Basic realm="a\"b"`, `dpop ERROR = "x"`},
			[]ch{{Scheme: "Basic", Params: map[string]string{"realm": `a"b`}}, {Scheme: "dpop", Params: map[string]string{"error": "x"}}}},
		{[]string{`Negotiate abc+/==, Bearer`}, []ch{{Scheme: "Negotiate", Token68: "abc+/=="}, {Scheme: "Bearer"}}},
		{[]string{`, ,DPoP`}, []ch{{Scheme: "DPoP"}}},
		{[]string{`DPoP error="unterminated`}, []ch{{Scheme: "DPoP"}}},
		{[]string{`"quoted"`}, nil},
		{nil, nil},
	} {
		got := ParseChallenges(tt.in)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParseChallenges(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
	chs := ParseChallenges([]string{`Bearer error="invalid_token", DPoP error="use_dpop_nonce"`})
	if code, ok := Error(chs, "dpop"); !ok || code != "use_dpop_nonce" {
		t.Fatalf("Error = %q %v", code, ok)
	}
	if _, ok := Error(chs, "Basic"); ok {
		t.Fatal("found Basic")
	}
}

func TestDERToRaw(t *testing.T) {
	if _, err := derToRaw([]byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01}); err == nil {
		t.Fatal("accepted a short signature")
	}
	der := []byte{0x30, 0x08, 0x02, 0x02, 0x00, 0x80, 0x02, 0x02, 0x01, 0x02}
	raw, err := derToRaw(der)
	if err != nil || raw[31] != 0x80 || raw[62] != 1 || raw[63] != 2 {
		t.Fatalf("%x %v", raw, err)
	}
}
