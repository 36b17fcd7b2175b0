package m2mtoken_test

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"

	"crypto/tls"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// A client that authenticates with its TLS certificate at the token
// endpoint's mTLS alias (as on Auth0), and gets tokens bound to it: the
// API accepts them through Client(), which presents the same
// certificate, and refuses them without it.
func ExampleConfig_clientCertFile() {
	const audience = "https://api.example.com/"
	ca := m2mtest.NewCA("clients")
	issuer := m2mtest.NewMTLSAliasServer(ca.Pool(), m2mtest.Client{ID: "svc", Audiences: []string{audience},
		Certificate: m2mtest.ClientCertificate{SubjectDN: "CN=svc,O=Example"}})
	defer issuer.Close()
	api := httptest.NewUnstartedServer(issuer.Protect(audience, nil, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})))
	api.TLS = &tls.Config{ClientAuth: tls.RequestClientCert} // the API sees the certificate
	api.StartTLS()
	defer api.Close()

	// The certificate and key as cert-manager writes them, and the test
	// servers' CA.
	dir, _ := os.MkdirTemp("", "mtls")
	defer os.RemoveAll(dir)
	cert, err := ca.Issue(&x509.Certificate{Subject: pkix.Name{CommonName: "svc", Organization: []string{"Example"}}})
	if err != nil {
		log.Fatal(err)
	}
	certPEM, keyPEM, _ := m2mtest.CertificatePEM(cert)
	certFile, keyFile, caFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.crt")
	os.WriteFile(certFile, certPEM, 0o600)
	os.WriteFile(keyFile, keyPEM, 0o600)
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: issuer.Certificate().Raw}), 0o600)

	src, err := m2mtoken.New(m2mtoken.Config{
		TokenURL:       issuer.TokenURL(),
		MTLSTokenURL:   issuer.MTLSTokenURL(),
		ClientID:       "svc",
		ClientCertFile: certFile, // the certificate is the credential: tls_client_auth
		ClientKeyFile:  keyFile,
		Audience:       audience,
		CAFile:         caFile,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	resp, err := src.Client().Get(api.URL)
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	tok, _ := src.Token()
	req, _ := http.NewRequest("GET", api.URL, nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	without, err := issuer.Client().Do(req) // trusts the server, presents no certificate
	if err != nil {
		log.Fatal(err)
	}
	without.Body.Close()
	fmt.Println(src.Pool().Stats().TokenRequests, resp.StatusCode, without.StatusCode)
	// Output: 1 200 401
}
