package jwt

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"testing"
)

func TestSignVerify(t *testing.T) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, c := range []struct {
		alg string
		key crypto.Signer
	}{{RS256, rk}, {PS256, rk}, {ES256, ek}} {
		tok, err := Sign(c.key, c.alg, "kid-1", map[string]any{"sub": "me"})
		if err != nil {
			t.Fatalf("%s: %v", c.alg, err)
		}
		var cl struct{ Sub string }
		h, err := Verify(tok, c.key.Public(), &cl)
		if err != nil || h.Alg != c.alg || h.Kid != "kid-1" || cl.Sub != "me" {
			t.Fatalf("%s: %+v %+v %v", c.alg, h, cl, err)
		}
		parts := strings.Split(tok, ".")
		tampered := parts[0] + "." + strings.TrimRight(parts[1], "=") + "e30" + "." + parts[2]
		for name, bad := range map[string]struct {
			tok string
			pub crypto.PublicKey
		}{
			"another key": {tok, other.Public()},
			"tampered":    {tampered, c.key.Public()},
			"not a JWT":   {"a.b", c.key.Public()},
		} {
			if _, err := Verify(bad.tok, bad.pub, &cl); err == nil {
				t.Errorf("%s, %s: verified", c.alg, name)
			}
		}
	}
}

// TestUnverifiedHeader: the header is read without the signature, and
// what is not a JWS says so as Verify does.
func TestUnverifiedHeader(t *testing.T) {
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tok, err := Sign(ek, ES256, "kid-1", map[string]any{"sub": "me"})
	if err != nil {
		t.Fatal(err)
	}
	if h, err := UnverifiedHeader(tok[:len(tok)-2] + "xx"); err != nil || h.Alg != ES256 || h.Kid != "kid-1" {
		t.Errorf("header %+v, %v", h, err)
	}
	parts := strings.Split(tok, ".")
	for bad, want := range map[string]string{
		"abc":                        "is not a JWT",
		parts[0] + "." + parts[1]:    "is not a JWT",
		"bm90." + parts[1] + ".c2ln": "header does not parse",
	} {
		if _, err := UnverifiedHeader(bad); err == nil || err.Error() != want {
			t.Errorf("%q: %v, want %q", bad, err, want)
		}
	}
}
