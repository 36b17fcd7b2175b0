package m2mtest_test

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"time"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// An issuer for a test, an API it protects, and faults on demand: the next
// two token requests fail with 503, and the client's retries get through.
func ExampleNewServer() {
	iss := m2mtest.NewServer(m2mtest.Client{ID: "svc", Secret: "pw",
		Audiences: []string{"https://api.example.com/"}, Scopes: []string{"read:messages"}})
	defer iss.Close()
	yourHandler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	api := httptest.NewServer(iss.Protect("https://api.example.com/", []string{"read:messages"}, yourHandler))
	defer api.Close()
	iss.FailNext(2, m2mtest.Fault{Status: 503}) // the next two token requests fail

	src, err := m2mtoken.New(m2mtoken.Config{TokenURL: iss.TokenURL(), ClientID: "svc", ClientSecret: "pw",
		Audience: "https://api.example.com/"})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	resp, err := src.Client().Get(api.URL) // 200, after two retries
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, iss.TokensIssued("svc"), iss.Requests())
	// Output: 200 1 3
}

// A secret rotated the way Auth0 rotates one, with its propagation delay:
// the old secret is refused at once and the new one works thirty seconds
// later, by the server's clock, so that a test steps through it without
// sleeping.
func ExampleServer_RotateSecret() {
	iss := m2mtest.NewServer(m2mtest.Client{ID: "svc", Secret: "old", Audiences: []string{"https://api.example.com/"}})
	defer iss.Close()
	now := time.Now()
	iss.SetClock(func() time.Time { return now })
	status := func(secret string) int {
		resp, err := http.PostForm(iss.TokenURL(), url.Values{"grant_type": {"client_credentials"},
			"client_id": {"svc"}, "client_secret": {secret}, "audience": {"https://api.example.com/"}})
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	if err := iss.RotateSecret("svc", "new", m2mtest.Rotation{NewAfter: 30 * time.Second}); err != nil {
		log.Fatal(err)
	}
	fmt.Println(status("old"), status("new"))
	now = now.Add(30 * time.Second)
	fmt.Println(status("old"), status("new"))
	// Output:
	// 401 401
	// 401 200
}

// A workload identity: the client accepts a Kubernetes service account's
// token as its client assertion. A test writes the platform's token to
// the file a client reads, as the kubelet would.
func ExamplePlatform() {
	cluster := m2mtest.NewPlatform("https://kubernetes.default.svc.cluster.local")
	iss := m2mtest.NewServer(m2mtest.Client{ID: "svc", Audiences: []string{"https://api.example.com/"}})
	defer iss.Close()
	if err := iss.Trust("svc", cluster.Trust("system:serviceaccount:prod:billing")); err != nil {
		log.Fatal(err)
	}
	tok, err := cluster.Token("system:serviceaccount:prod:billing", "", time.Hour) // aud api://AzureADTokenExchange
	if err != nil {
		log.Fatal(err)
	}
	resp, err := http.PostForm(iss.TokenURL(), url.Values{"grant_type": {"client_credentials"}, "client_id": {"svc"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {tok}, "audience": {"https://api.example.com/"}})
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, iss.TokensIssued("svc"))
	// Output: 200 1
}

// A client that authenticates with its TLS certificate (tls_client_auth)
// at the mTLS endpoint alias, as on Auth0, and an API that accepts the
// certificate-bound token only from a connection with that certificate.
func ExampleNewMTLSAliasServer() {
	const audience = "https://api.example.com/"
	ca := m2mtest.NewCA("clients")
	iss := m2mtest.NewMTLSAliasServer(ca.Pool(), m2mtest.Client{ID: "svc", Audiences: []string{audience},
		Certificate: m2mtest.ClientCertificate{SubjectDN: "CN=svc,O=Example"}})
	defer iss.Close()
	cert, err := ca.Issue(&x509.Certificate{Subject: pkix.Name{CommonName: "svc", Organization: []string{"Example"}}})
	if err != nil {
		log.Fatal(err)
	}
	withCert := iss.CertificateClient(cert)
	resp, err := withCert.PostForm(iss.MTLSTokenURL(), url.Values{"grant_type": {"client_credentials"},
		"client_id": {"svc"}, "audience": {audience}}) // no secret: the certificate authenticates
	if err != nil {
		log.Fatal(err)
	}
	var answer struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	json.NewDecoder(resp.Body).Decode(&answer)
	resp.Body.Close()

	api := httptest.NewUnstartedServer(iss.Protect(audience, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	api.TLS = &tls.Config{ClientAuth: tls.RequestClientCert} // so that the API sees the certificate
	api.StartTLS()
	defer api.Close()
	call := func(c *http.Client) int {
		req, _ := http.NewRequest("GET", api.URL, nil)
		req.Header.Set("Authorization", "Bearer "+answer.AccessToken)
		resp, err := c.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	fmt.Println(answer.TokenType, call(withCert), call(iss.Client()))
	// Output: Bearer 200 401
}
