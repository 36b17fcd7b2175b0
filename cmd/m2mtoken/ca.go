package main

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net"
	"time"

	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// localCA is a certificate authority made for one run of serve --tls: its
// key lives only in memory, and its certificate is what clients trust. It
// issues the server's certificate and, when the client authenticates with
// one, the client's.
type localCA struct {
	*m2mtest.CA
}

func newLocalCA() (*localCA, error) {
	return &localCA{m2mtest.NewCA("m2mtoken serve local CA " + time.Now().UTC().Format(time.RFC3339))}, nil
}

// PEM is the CA certificate, for clients to trust.
func (ca *localCA) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Certificate().Raw})
}

// serverCert issues a server certificate for the given names and
// addresses.
func (ca *localCA) serverCert(names []string, ips []net.IP) (tls.Certificate, error) {
	now := time.Now()
	cn := "localhost"
	if len(names) > 0 {
		cn = names[0]
	}
	cert, err := ca.Issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		DNSNames:    names,
		IPAddresses: ips,
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.AddDate(1, 0, 0),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issuing the server certificate: %w", err)
	}
	cert.Certificate = append(cert.Certificate, ca.Certificate().Raw)
	return cert, nil
}

// clientCert issues a client certificate for clientID, valid for life:
// for tls_client_auth, whose subject serve registers.
func (ca *localCA) clientCert(clientID string, life time.Duration) (tls.Certificate, error) {
	now := time.Now()
	cert, err := ca.Issue(&x509.Certificate{Subject: pkix.Name{CommonName: clientID}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(life)})
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issuing the client certificate: %w", err)
	}
	return cert, nil
}
