// Client certificates for tests: a CA that issues them for
// tls_client_auth, self-signed ones, and their PEM files.

package m2mtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// CA is a certificate authority for tests' client certificates: the
// certificates it issues chain to it, for tls_client_auth with a server
// whose client CAs are [CA.Pool]. Its key is a P-256 key that lives in
// memory only.
type CA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewCA returns a CA whose certificate names name (its CommonName) and is
// valid for a year.
func NewCA(name string) *CA {
	key := newP256Key()
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(), Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		panic("m2mtest: making a CA certificate: " + err.Error()) // the template is ours
	}
	cert, _ := x509.ParseCertificate(der)
	return &CA{cert: cert, key: key}
}

// Certificate is the CA's certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// Pool is a pool that holds the CA's certificate: the clientCAs of
// [NewMTLSServer] or [NewMTLSAliasServer].
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// Issue returns a client certificate with a new P-256 key, signed by the
// CA, from tmpl: its Subject and subject alternative names (DNSNames,
// URIs, IPAddresses, EmailAddresses) as the test needs. What tmpl leaves
// zero is filled in: a random serial number, NotBefore a minute ago,
// NotAfter a day after NotBefore, the key usage for TLS client
// authentication. tmpl itself is not changed.
func (ca *CA) Issue(tmpl *x509.Certificate) (tls.Certificate, error) {
	return makeCertificate(tmpl, ca.cert, ca.key)
}

// SelfSigned returns a self-signed client certificate with a new P-256
// key from tmpl, filled in as [CA.Issue] fills it, for
// self_signed_tls_client_auth ([ClientCertificate.SelfSigned] is its
// Leaf).
func SelfSigned(tmpl *x509.Certificate) (tls.Certificate, error) {
	return makeCertificate(tmpl, nil, nil)
}

func makeCertificate(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (tls.Certificate, error) {
	if tmpl == nil {
		return tls.Certificate{}, errors.New("m2mtest: no certificate template")
	}
	t := *tmpl
	if t.SerialNumber == nil {
		t.SerialNumber = randomSerial()
	}
	if t.NotBefore.IsZero() {
		t.NotBefore = time.Now().Add(-time.Minute)
	}
	if t.NotAfter.IsZero() {
		t.NotAfter = t.NotBefore.Add(24 * time.Hour)
	}
	if t.KeyUsage == 0 {
		t.KeyUsage = x509.KeyUsageDigitalSignature
	}
	if len(t.ExtKeyUsage) == 0 {
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	key := newP256Key()
	if parent == nil {
		parent, parentKey = &t, key
	}
	der, err := x509.CreateCertificate(rand.Reader, &t, parent, key.Public(), parentKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("m2mtest: making the certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("m2mtest: making the certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// CertificatePEM returns cert's certificates (the leaf first) and its
// private key (PKCS #8) as PEM, for the files a client reads.
func CertificatePEM(cert tls.Certificate) (certPEM, keyPEM []byte, err error) {
	for _, der := range cert.Certificate {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return nil, nil, fmt.Errorf("m2mtest: CertificatePEM: %w", err)
	}
	return certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func newP256Key() *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic("m2mtest: generating a P-256 key: " + err.Error()) // the system's randomness failed
	}
	return key
}

func randomSerial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	return n
}
