// Package dpop makes and checks DPoP proofs (RFC 9449), computes RFC 7638
// key thumbprints, and parses the headers that carry DPoP nonces and
// challenges. The client side (Key.Proof) is on the hot path of every API
// request with a DPoP-bound token: the proof's header is encoded once per
// key, and a proof costs one signature plus a few small appends.
package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"time"
	"unicode/utf8"
)

// Algorithms a proof can be signed with.
const (
	ES256 = "ES256"
	PS256 = "PS256"
	RS256 = "RS256"
	EdDSA = "EdDSA"
)

var b64 = base64.RawURLEncoding

// Key signs proofs. It holds the private key only to sign: nothing in it
// prints or encodes it.
type Key struct {
	signer crypto.Signer
	alg    string
	prefix string // base64url(header) + "."
	jkt    string
	jwk    string // the public key's canonical (RFC 7638) JWK
}

// NewKey checks that signer can sign proofs under alg and returns the Key.
// An empty alg picks the key's default: ES256 for P-256, PS256 for RSA
// (at least 2048 bits), EdDSA for Ed25519.
func NewKey(signer crypto.Signer, alg string) (*Key, error) {
	if signer == nil {
		return nil, errors.New("no key")
	}
	var jwk string
	switch pub := signer.Public().(type) {
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return nil, fmt.Errorf("the ECDSA key is on curve %s; DPoP here uses P-256 (ES256)", pub.Curve.Params().Name)
		}
		switch alg {
		case "", ES256:
			alg = ES256
		default:
			return nil, fmt.Errorf("algorithm %q does not fit a P-256 key: use ES256", alg)
		}
		raw, err := pub.Bytes()
		if err != nil || len(raw) != 65 {
			return nil, errors.New("the ECDSA public key does not encode")
		}
		jwk = `{"crv":"P-256","kty":"EC","x":"` + b64.EncodeToString(raw[1:33]) + `","y":"` + b64.EncodeToString(raw[33:]) + `"}`
	case *rsa.PublicKey:
		if pub.N.BitLen() < 2048 {
			return nil, fmt.Errorf("the RSA key has %d bits; at least 2048 are needed", pub.N.BitLen())
		}
		switch alg {
		case "":
			alg = PS256
		case PS256, RS256:
		default:
			return nil, fmt.Errorf("algorithm %q does not fit an RSA key: use PS256 or RS256", alg)
		}
		jwk = `{"e":"` + b64.EncodeToString(big.NewInt(int64(pub.E)).Bytes()) + `","kty":"RSA","n":"` + b64.EncodeToString(pub.N.Bytes()) + `"}`
	case ed25519.PublicKey:
		switch alg {
		case "", EdDSA:
			alg = EdDSA
		default:
			return nil, fmt.Errorf("algorithm %q does not fit an Ed25519 key: use EdDSA", alg)
		}
		jwk = `{"crv":"Ed25519","kty":"OKP","x":"` + b64.EncodeToString(pub) + `"}`
	default:
		return nil, fmt.Errorf("unsupported key type %T: use an ECDSA P-256 (recommended), RSA or Ed25519 key", pub)
	}
	sum := sha256.Sum256([]byte(jwk))
	header := `{"typ":"dpop+jwt","alg":"` + alg + `","jwk":` + jwk + `}`
	return &Key{signer: signer, alg: alg, prefix: b64.EncodeToString([]byte(header)) + ".", jkt: b64.EncodeToString(sum[:]), jwk: jwk}, nil
}

// Alg is the proofs' signing algorithm.
func (k *Key) Alg() string { return k.alg }

// Thumbprint is the RFC 7638 SHA-256 thumbprint of the public key,
// base64url: the value of a bound token's cnf.jkt. It is public.
func (k *Key) Thumbprint() string { return k.jkt }

// JWK is the public key as a canonical JWK (no private member).
func (k *Key) JWK() string { return k.jwk }

// ATH is the ath claim for an access token: base64url(SHA-256(token)).
func ATH(token string) string {
	sum := sha256.Sum256([]byte(token))
	return b64.EncodeToString(sum[:])
}

// Proof returns a new proof for one request: a unique jti, htm, htu, iat,
// and nonce and ath when not empty. htu must already be the target URI
// without query and fragment (see HTU).
func (k *Key) Proof(htm, htu, nonce, ath string, iat time.Time) (string, error) {
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", err
	}
	var cb [512]byte
	c := append(cb[:0], `{"jti":"`...)
	c = b64.AppendEncode(c, jti[:])
	c = append(c, `","htm":`...)
	c = appendString(c, htm)
	c = append(c, `,"htu":`...)
	c = appendString(c, htu)
	c = append(c, `,"iat":`...)
	c = strconv.AppendInt(c, iat.Unix(), 10)
	if nonce != "" {
		c = append(c, `,"nonce":`...)
		c = appendString(c, nonce)
	}
	if ath != "" {
		c = append(c, `,"ath":`...)
		c = appendString(c, ath)
	}
	c = append(c, '}')

	out := make([]byte, 0, len(k.prefix)+b64.EncodedLen(len(c))+1+b64.EncodedLen(512))
	out = append(out, k.prefix...)
	out = b64.AppendEncode(out, c)
	sig, err := k.sign(out)
	if err != nil {
		return "", err
	}
	out = append(out, '.')
	out = b64.AppendEncode(out, sig)
	return string(out), nil
}

// sign signs the JWS signing input under k.alg, returning the JWS
// signature bytes.
func (k *Key) sign(input []byte) ([]byte, error) {
	if k.alg == EdDSA {
		return k.signer.Sign(rand.Reader, input, crypto.Hash(0))
	}
	digest := sha256.Sum256(input)
	switch k.alg {
	case ES256:
		der, err := k.signer.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil {
			return nil, err
		}
		return derToRaw(der)
	case PS256:
		return k.signer.Sign(rand.Reader, digest[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256})
	default:
		return k.signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	}
}

// derToRaw turns an ASN.1 DER ECDSA P-256 signature, SEQUENCE { INTEGER r,
// INTEGER s }, into JWS's 64-byte r||s without allocating big integers.
func derToRaw(der []byte) ([]byte, error) {
	bad := errors.New("the signer returned a malformed ECDSA signature")
	if len(der) < 8 || der[0] != 0x30 || int(der[1]) != len(der)-2 || der[1] >= 0x80 {
		return nil, bad
	}
	out := make([]byte, 64)
	rest := der[2:]
	for i := 0; i < 2; i++ {
		if len(rest) < 2 || rest[0] != 0x02 || int(rest[1]) > len(rest)-2 || rest[1] == 0 {
			return nil, bad
		}
		n := rest[2 : 2+int(rest[1])]
		rest = rest[2+int(rest[1]):]
		for len(n) > 0 && n[0] == 0 {
			n = n[1:]
		}
		if len(n) > 32 {
			return nil, bad
		}
		copy(out[32*i+32-len(n):32*i+32], n)
	}
	if len(rest) != 0 {
		return nil, bad
	}
	return out, nil
}

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			b = append(b, c)
			i++
			continue
		}
		if c < utf8.RuneSelf {
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, `\u00`...)
				b = append(b, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&0xf])
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
