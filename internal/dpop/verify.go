package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"slices"
	"strings"
	"time"
)

// maxProof bounds the proofs Verify reads.
const maxProof = 16 << 10

// Proof is a proof whose signature verified with the key in its header.
type Proof struct {
	Alg string
	// JKT is the RFC 7638 thumbprint of the proof's key.
	JKT string
	// The claims. IAT is in Unix seconds.
	JTI, HTM, HTU, Nonce, ATH string
	IAT                       int64
}

// Verify checks a proof as a strict server does before it looks at the
// claims' values: three base64url parts, typ "dpop+jwt", alg among algs,
// a jwk header holding a public key only (no private member) that fits
// alg, and a signature that verifies with that key. It also requires the
// claims jti, htm and htu as non-empty strings and iat as a number.
func Verify(proof string, algs []string) (*Proof, error) {
	if len(proof) > maxProof {
		return nil, errors.New("the proof is too long")
	}
	parts := strings.Split(proof, ".")
	if len(parts) != 3 {
		return nil, errors.New("the proof is not a compact JWS")
	}
	hb, err := b64.DecodeString(parts[0])
	if err != nil {
		return nil, errors.New("the proof header is not base64url")
	}
	var h struct {
		Typ string                     `json:"typ"`
		Alg string                     `json:"alg"`
		JWK map[string]json.RawMessage `json:"jwk"`
	}
	if err := json.Unmarshal(hb, &h); err != nil {
		return nil, errors.New("the proof header is not a JSON object")
	}
	switch {
	case h.Typ != "dpop+jwt":
		return nil, fmt.Errorf("the proof's typ is %.40q, not dpop+jwt", h.Typ)
	case !slices.Contains(algs, h.Alg):
		return nil, fmt.Errorf("the proof's alg %.20q is not one of %s", h.Alg, strings.Join(algs, ", "))
	case h.JWK == nil:
		return nil, errors.New("the proof has no jwk header")
	}
	pub, jkt, err := ParseJWK(h.JWK)
	if err != nil {
		return nil, fmt.Errorf("the proof's jwk: %w", err)
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil {
		return nil, errors.New("the proof's signature is not base64url")
	}
	if err := verifySig(pub, h.Alg, []byte(parts[0]+"."+parts[1]), sig); err != nil {
		return nil, err
	}
	cb, err := b64.DecodeString(parts[1])
	if err != nil {
		return nil, errors.New("the proof's claims are not base64url")
	}
	var c struct {
		JTI   *string  `json:"jti"`
		HTM   *string  `json:"htm"`
		HTU   *string  `json:"htu"`
		IAT   *float64 `json:"iat"`
		Nonce *string  `json:"nonce"`
		ATH   *string  `json:"ath"`
	}
	if err := json.Unmarshal(cb, &c); err != nil {
		return nil, errors.New("the proof's claims are not a JSON object with string jti, htm, htu, nonce, ath and a numeric iat")
	}
	if c.JTI == nil || *c.JTI == "" || c.HTM == nil || *c.HTM == "" || c.HTU == nil || *c.HTU == "" || c.IAT == nil {
		return nil, errors.New("the proof lacks jti, htm, htu or iat")
	}
	p := &Proof{Alg: h.Alg, JKT: jkt, JTI: *c.JTI, HTM: *c.HTM, HTU: *c.HTU, IAT: int64(*c.IAT)}
	if c.Nonce != nil {
		p.Nonce = *c.Nonce
	}
	if c.ATH != nil {
		p.ATH = *c.ATH
	}
	return p, nil
}

// Check checks the claims against the request: htm equals method, htu
// (without query and fragment, scheme and host compared
// case-insensitively) equals htu, and iat is within window of now.
func (p *Proof) Check(method, htu string, now time.Time, window time.Duration) error {
	if p.HTM != method {
		return fmt.Errorf("htm %.20q does not match the request method %s", p.HTM, method)
	}
	u, err := url.Parse(p.HTU)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return fmt.Errorf("htu %.100q is not an absolute URL", p.HTU)
	}
	if got, _ := HTU(u); got != htu {
		return fmt.Errorf("htu %.100q does not match the request URL %s", got, htu)
	}
	iat := time.Unix(p.IAT, 0)
	if d := now.Sub(iat); d > window || d < -window {
		return fmt.Errorf("iat is %v from the server's clock, more than %v", d.Round(time.Second), window)
	}
	return nil
}

// ParseJWK reads a public JWK (EC P-256, RSA of at least 2048 bits, or
// Ed25519), refusing one with a private member, and returns the key and
// its RFC 7638 thumbprint. Members other than the key's own (kid, use,
// alg) are not read.
func ParseJWK(m map[string]json.RawMessage) (crypto.PublicKey, string, error) {
	for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"} {
		if _, ok := m[private]; ok {
			return nil, "", fmt.Errorf("holds the private member %q", private)
		}
	}
	str := func(name string) (string, []byte, error) {
		var s string
		if err := json.Unmarshal(m[name], &s); err != nil || s == "" {
			return "", nil, fmt.Errorf("no %s", name)
		}
		b, err := b64.DecodeString(s)
		if err != nil {
			return "", nil, fmt.Errorf("%s is not base64url", name)
		}
		return s, b, nil
	}
	var kt string
	json.Unmarshal(m["kty"], &kt)
	var crv string
	json.Unmarshal(m["crv"], &crv)
	var canon string
	var pub crypto.PublicKey
	switch kt {
	case "EC":
		xs, x, err := str("x")
		if err != nil {
			return nil, "", err
		}
		ys, y, err := str("y")
		if err != nil {
			return nil, "", err
		}
		if crv != "P-256" || len(x) != 32 || len(y) != 32 {
			return nil, "", errors.New("only P-256 EC keys are accepted")
		}
		k, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return nil, "", errors.New("the EC point is not on P-256")
		}
		pub = k
		canon = `{"crv":"P-256","kty":"EC","x":"` + xs + `","y":"` + ys + `"}`
	case "RSA":
		ns, n, err := str("n")
		if err != nil {
			return nil, "", err
		}
		es, e, err := str("e")
		if err != nil {
			return nil, "", err
		}
		if len(e) > 4 || len(n) < 256 {
			return nil, "", errors.New("the RSA key is under 2048 bits or has an odd exponent")
		}
		pub = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		canon = `{"e":"` + es + `","kty":"RSA","n":"` + ns + `"}`
	case "OKP":
		xs, x, err := str("x")
		if err != nil {
			return nil, "", err
		}
		if crv != "Ed25519" || len(x) != ed25519.PublicKeySize {
			return nil, "", errors.New("only Ed25519 OKP keys are accepted")
		}
		pub = ed25519.PublicKey(x)
		canon = `{"crv":"Ed25519","kty":"OKP","x":"` + xs + `"}`
	default:
		return nil, "", fmt.Errorf("kty %.10q is not EC, RSA or OKP", kt)
	}
	sum := sha256.Sum256([]byte(canon))
	return pub, b64.EncodeToString(sum[:]), nil
}

func verifySig(pub crypto.PublicKey, alg string, input, sig []byte) error {
	bad := errors.New("the proof's signature does not verify with its jwk")
	digest := sha256.Sum256(input)
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if alg == ES256 {
			if len(sig) != 64 || !ecdsa.Verify(k, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
				return bad
			}
			return nil
		}
	case *rsa.PublicKey:
		switch alg {
		case RS256:
			if rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], sig) != nil {
				return bad
			}
			return nil
		case PS256:
			if rsa.VerifyPSS(k, crypto.SHA256, digest[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto}) != nil {
				return bad
			}
			return nil
		}
	case ed25519.PublicKey:
		if alg == EdDSA {
			if !ed25519.Verify(k, input, sig) {
				return bad
			}
			return nil
		}
	}
	return fmt.Errorf("the proof's alg %s does not fit its jwk", alg)
}
