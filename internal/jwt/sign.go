package jwt

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
)

// Algorithms this package signs with.
const (
	RS256 = "RS256"
	PS256 = "PS256"
	ES256 = "ES256"
)

// CheckKey reports whether key can sign with alg, and returns the
// algorithm to use: alg, or the default for the key when alg is empty
// (RS256 for RSA, ES256 for P-256).
func CheckKey(key crypto.Signer, alg string) (string, error) {
	if key == nil {
		return "", errors.New("no key")
	}
	switch pub := key.Public().(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < 2048 {
			return "", fmt.Errorf("the RSA key has %d bits; at least 2048 are needed", pub.N.BitLen())
		}
		switch alg {
		case "":
			return RS256, nil
		case RS256, PS256:
			return alg, nil
		}
		return "", fmt.Errorf("algorithm %q does not fit an RSA key: use RS256 or PS256", alg)
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return "", fmt.Errorf("the ECDSA key is on curve %s; only P-256 (ES256) is supported", pub.Curve.Params().Name)
		}
		switch alg {
		case "", ES256:
			return ES256, nil
		}
		return "", fmt.Errorf("algorithm %q does not fit a P-256 key: use ES256", alg)
	default:
		return "", fmt.Errorf("unsupported key type %T: use an RSA or ECDSA P-256 key", pub)
	}
}

// Sign returns a compact JWS of claims, signed with key under alg, with kid
// in the header if it is not empty. alg must have passed CheckKey.
func Sign(key crypto.Signer, alg, kid string, claims any) (string, error) {
	header := map[string]string{"alg": alg, "typ": "JWT"}
	if kid != "" {
		header["kid"] = kid
	}
	hb, err := json.Marshal(header)
	if err != nil {
		return "", err
	}
	cb, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString(hb) + "." + enc.EncodeToString(cb)
	digest := sha256.Sum256([]byte(signing))
	var sig []byte
	switch alg {
	case RS256:
		sig, err = key.Sign(rand.Reader, digest[:], crypto.SHA256)
	case PS256:
		sig, err = key.Sign(rand.Reader, digest[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256})
	case ES256:
		var der []byte
		if der, err = key.Sign(rand.Reader, digest[:], crypto.SHA256); err == nil {
			sig, err = derToRaw(der, 32)
		}
	default:
		return "", fmt.Errorf("unsupported algorithm %q", alg)
	}
	if err != nil {
		return "", fmt.Errorf("signing: %w", err)
	}
	return signing + "." + enc.EncodeToString(sig), nil
}

// derToRaw turns an ASN.1 ECDSA signature into JWS's fixed-width r||s.
func derToRaw(der []byte, size int) ([]byte, error) {
	var rs struct{ R, S *big.Int }
	rest, err := asn1.Unmarshal(der, &rs)
	if err != nil || len(rest) > 0 || rs.R == nil || rs.S == nil {
		return nil, errors.New("the signer returned a malformed ECDSA signature")
	}
	out := make([]byte, 2*size)
	rs.R.FillBytes(out[:size])
	rs.S.FillBytes(out[size:])
	return out, nil
}
