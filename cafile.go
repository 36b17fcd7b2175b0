// The CAs that token requests and TokenSource.Client trust: the system's,
// and Config.CAFile's besides.

package m2mtoken

import (
	"crypto/x509"
	"fmt"

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
