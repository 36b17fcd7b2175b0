package jwt

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// Header holds the JWS header fields this package reads.
type Header struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
}

// Verify checks the signature of the compact JWS tok with pub, under the
// algorithm its header names (RS256, PS256 or ES256; it must fit pub), and
// decodes its claims into claims. It checks no claim: that is the caller's
// job. It is the counterpart of [Sign], for the m2mtest issuer.
func Verify(tok string, pub crypto.PublicKey, claims any) (Header, error) {
	parts, h, err := header(tok)
	if err != nil {
		return h, err
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return h, errors.New("signature is not base64url")
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := verifySig(pub, h.Alg, digest[:], sig); err != nil {
		return h, err
	}
	if err := decodePart(parts[1], claims); err != nil {
		return h, errors.New("claims do not parse")
	}
	return h, nil
}

func decodePart(p string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func verifySig(pub crypto.PublicKey, alg string, digest, sig []byte) error {
	bad := errors.New("signature does not verify")
	switch k := pub.(type) {
	case *rsa.PublicKey:
		switch alg {
		case RS256:
			if rsa.VerifyPKCS1v15(k, crypto.SHA256, digest, sig) != nil {
				return bad
			}
			return nil
		case PS256:
			if rsa.VerifyPSS(k, crypto.SHA256, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto}) != nil {
				return bad
			}
			return nil
		}
	case *ecdsa.PublicKey:
		if alg == ES256 {
			if len(sig) != 64 || !ecdsa.Verify(k, digest, new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
				return bad
			}
			return nil
		}
	}
	return fmt.Errorf("algorithm %q does not fit the key", alg)
}

// Unverified decodes the claims of the compact JWS tok without checking
// its signature: only to find which key should check it.
func Unverified(tok string, claims any) error {
	parts, err := split(tok)
	if err != nil {
		return err
	}
	return decodePart(parts[1], claims)
}

// UnverifiedHeader decodes the header of the compact JWS tok without
// checking its signature: only to find which key should check it (kid).
func UnverifiedHeader(tok string) (Header, error) {
	_, h, err := header(tok)
	return h, err
}

// header splits the compact JWS tok and decodes its header.
func header(tok string) ([]string, Header, error) {
	var h Header
	parts, err := split(tok)
	if err != nil {
		return nil, h, err
	}
	if err := decodePart(parts[0], &h); err != nil {
		return nil, h, errors.New("header does not parse")
	}
	return parts, h, nil
}

// split returns the three parts of the compact JWS tok.
func split(tok string) ([]string, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || len(tok) > maxLen {
		return nil, errors.New("is not a JWT")
	}
	return parts, nil
}
