// Public keys that check assertions: a client's Private Key JWT
// credentials, a trusted platform's signing keys, and reading them from
// PEM or a JWKS.

package m2mtest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/m2mtoken/m2mtoken/internal/dpop"
	"github.com/m2mtoken/m2mtoken/internal/jwt"
)

// maxCredentials is how many Private Key JWT credentials a client may
// hold at once, as on Auth0.
const maxCredentials = 2

// Key is a public key that checks assertions: one of a client's Private
// Key JWT credentials ([Server.AddKey]) or one of a platform's signing keys
// ([TrustedIssuer]).
type Key struct {
	// ID is the key's kid. An assertion whose header names a kid is
	// checked with the key of that ID (and with keys that have none); one
	// without a kid, with every key. Empty: the key has no ID.
	ID string
	// PublicKey is an *rsa.PublicKey (RS256, PS256) or a P-256
	// *ecdsa.PublicKey (ES256).
	PublicKey crypto.PublicKey
}

// checkKey says what is wrong with k for checking assertions, if anything.
func checkKey(k Key) error {
	switch pub := k.PublicKey.(type) {
	case *rsa.PublicKey:
		if pub == nil || pub.N == nil {
			return errors.New("the RSA public key is empty")
		}
		return nil
	case *ecdsa.PublicKey:
		if pub == nil || pub.Curve != elliptic.P256() {
			return errors.New("the ECDSA public key is not on P-256: use P-256 (ES256) or RSA")
		}
		return nil
	case nil:
		return errors.New("the key has no PublicKey")
	default:
		return fmt.Errorf("unsupported key type %T: use an RSA or P-256 ECDSA public key", pub)
	}
}

// keysFor returns the keys that may check an assertion whose header names
// kid: all of them without a kid, else those of that ID or of none.
func keysFor(keys []Key, kid string) []Key {
	if kid == "" {
		return keys
	}
	var out []Key
	for _, k := range keys {
		if k.ID == "" || k.ID == kid {
			out = append(out, k)
		}
	}
	return out
}

// verifyWith checks assertion's signature with the keys its kid selects
// and decodes its claims into claims. whose names the keys in errors,
// such as "the client's credentials".
func verifyWith(assertion string, keys []Key, whose string, claims any) error {
	h, err := jwt.UnverifiedHeader(assertion)
	if err != nil {
		return fmt.Errorf("client_assertion %w", err)
	}
	cands := keysFor(keys, h.Kid)
	if len(cands) == 0 {
		return fmt.Errorf("client_assertion kid %q names none of %s", clip(h.Kid), whose)
	}
	var first error
	for _, k := range cands {
		_, err := jwt.Verify(assertion, k.PublicKey, claims)
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
	}
	if len(cands) > 1 {
		return fmt.Errorf("client_assertion %w with any of %s (%d keys)", first, whose, len(cands))
	}
	return fmt.Errorf("client_assertion %w", first)
}

// ParseKeys reads public keys from data: PEM blocks (PUBLIC KEY, RSA
// PUBLIC KEY, or a CERTIFICATE's key), or JSON, a JWKS ({"keys": [...]})
// or a single JWK, whose kid becomes the key's ID. A JWKS's keys for
// other uses than signatures (use "enc", or a SPIFFE bundle's
// "x509-svid") and of types that cannot check an assertion are left out.
// It is for trusting a platform whose keys sit in a file, such as a
// Kubernetes service-account issuer's public key or a SPIFFE trust
// bundle.
func ParseKeys(data []byte) ([]Key, error) {
	trimmed := bytes.TrimSpace(data)
	if bytes.HasPrefix(trimmed, []byte("{")) {
		return parseJWKS(trimmed)
	}
	var keys []Key
	rest := trimmed
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		var pub crypto.PublicKey
		var err error
		switch block.Type {
		case "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				pub = cert.PublicKey
			}
		default:
			if strings.HasSuffix(block.Type, "PRIVATE KEY") {
				return nil, fmt.Errorf("it holds a private key (%s): give the public key instead, such as the output of openssl pkey -in KEY -pubout", block.Type)
			}
			return nil, fmt.Errorf("unexpected PEM block %q: want PUBLIC KEY or CERTIFICATE", clip(block.Type))
		}
		if err != nil {
			return nil, fmt.Errorf("PEM block %s: %v", block.Type, err)
		}
		k := Key{PublicKey: pub}
		if err := checkKey(k); err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no public key in it: want PEM (PUBLIC KEY or CERTIFICATE) or a JWKS")
	}
	return keys, nil
}

func parseJWKS(data []byte) ([]Key, error) {
	var set struct {
		Keys []map[string]json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("the JSON does not parse: %v", err)
	}
	if set.Keys == nil {
		var one map[string]json.RawMessage
		if err := json.Unmarshal(data, &one); err == nil && one["kty"] != nil {
			set.Keys = append(set.Keys, one)
		}
	}
	var keys []Key
	var skipped []string
	for _, m := range set.Keys {
		var use, kid string
		json.Unmarshal(m["use"], &use)
		json.Unmarshal(m["kid"], &kid)
		if use != "" && use != "sig" && use != "jwt-svid" {
			continue
		}
		pub, _, err := dpop.ParseJWK(m)
		k := Key{ID: kid, PublicKey: pub}
		if err == nil {
			err = checkKey(k)
		}
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("kid %q: %v", clip(kid), err))
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		if len(skipped) > 0 {
			return nil, fmt.Errorf("no usable signing key in the JWKS (%s)", strings.Join(skipped, "; "))
		}
		return nil, errors.New("no signing key in the JWKS: want {\"keys\": [...]} with RSA or P-256 keys")
	}
	return keys, nil
}
