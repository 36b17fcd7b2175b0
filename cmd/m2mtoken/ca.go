package main

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"strings"
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

// certNames are the names and addresses the server certificate is for:
// the host clients use, localhost and loopback, the listening address, and
// when listening everywhere the machine's name and addresses.
func certNames(listenHost, urlHost string, everywhere bool) ([]string, []net.IP) {
	names := []string{}
	var ips []net.IP
	add := func(h string) {
		if h == "" {
			return
		}
		if ip := net.ParseIP(h); ip != nil {
			if !ip.IsUnspecified() {
				ips = append(ips, ip)
			}
			return
		}
		for _, n := range names {
			if strings.EqualFold(n, h) {
				return
			}
		}
		names = append(names, h)
	}
	add(urlHost)
	add("localhost")
	add("127.0.0.1")
	add("::1")
	add(listenHost)
	if everywhere {
		if h, err := os.Hostname(); err == nil {
			add(h)
		}
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() {
					ips = append(ips, n.IP)
				}
			}
		}
	}
	return names, ips
}
