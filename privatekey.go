package m2mtoken

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/m2mtoken/m2mtoken/internal/atomicfile"
)

// ParsePrivateKeyPEM reads an RSA, ECDSA or Ed25519 private key from PEM:
// PKCS#1 ("RSA PRIVATE KEY"), PKCS#8 ("PRIVATE KEY", the only form of an
// Ed25519 key) or SEC 1 ("EC PRIVATE KEY"). Private Key JWT takes RSA and
// P-256 keys; DPoP takes Ed25519 too.
// Encrypted keys are refused: decrypt them first (for example with
// openssl pkey), or load the key from a secret store.
func ParsePrivateKeyPEM(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("m2mtoken: no PEM block found: want a PEM private key (-----BEGIN PRIVATE KEY-----, or EC or RSA PRIVATE KEY), such as openssl genpkey writes")
	}
	if block.Type == "ENCRYPTED PRIVATE KEY" || block.Headers["Proc-Type"] == "4,ENCRYPTED" {
		return nil, errors.New("m2mtoken: the private key is encrypted: decrypt it first (openssl pkey -in key.pem -out plain.pem)")
	}
	var key any
	var err error
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE":
		return nil, fmt.Errorf("m2mtoken: the PEM block is a %s, not a private key", block.Type)
	default:
		return nil, fmt.Errorf("m2mtoken: unsupported PEM block type %q: want RSA PRIVATE KEY, PRIVATE KEY or EC PRIVATE KEY", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("m2mtoken: parsing the %s: %w", block.Type, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("m2mtoken: a %T cannot sign", key)
	}
	return signer, nil
}

// LoadPrivateKey reads a PEM private key file; see [ParsePrivateKeyPEM].
// A file of more than 1 MiB is refused: it is not a key.
func LoadPrivateKey(path string) (crypto.Signer, error) {
	data, err := atomicfile.ReadLimited(path, atomicfile.KeyFileLimit, "a PEM private key file")
	if err != nil {
		return nil, fmt.Errorf("m2mtoken: reading the private key: %w", err)
	}
	return ParsePrivateKeyPEM(data)
}
