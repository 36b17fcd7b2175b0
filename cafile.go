// The CAs that token requests and TokenSource.Client trust: the system's,
// and Config.CAFile's besides.

package m2mtoken

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"

	"github.com/m2mtoken/m2mtoken/internal/atomicfile"
)

// loadCAFile returns the system's CAs and those in the PEM file caFile.
func loadCAFile(caFile string) (*x509.CertPool, error) {
	pem, err := atomicfile.ReadLimited(caFile, atomicfile.CAFileLimit, "a CA file")
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no PEM certificate in %q", caFile)
	}
	return pool, nil
}

// trusting makes t trust roots, if not nil, instead of the system's CAs
// alone (roots holds those too).
func trusting(t *http.Transport, roots *x509.CertPool) *http.Transport {
	if roots == nil {
		return t
	}
	if t.TLSClientConfig == nil {
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	t.TLSClientConfig.RootCAs = roots
	return t
}
