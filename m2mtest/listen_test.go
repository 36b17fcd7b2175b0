package m2mtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestListenUnspecified: an issuer on 0.0.0.0 has a URL a client can use.
func TestListenUnspecified(t *testing.T) {
	s, err := Listen("0.0.0.0:0", Client{ID: "svc", Secret: "pw", Audiences: []string{aud}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") {
		t.Fatalf("URL %q", s.URL)
	}
	resp, err := s.Client().Get(s.JWKSURL())
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	resp.Body.Close()
}

// TestListenConfigTLSAndHandle: an issuer with its own certificate and
// host name, serving an API beside the issuer's routes.
func TestListenConfigTLSAndHandle(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ListenConfig{
		Addr: "127.0.0.1:0", Host: "localhost",
		TLS: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
	}.Listen(Client{ID: "svc", Secret: "pw", Audiences: []string{aud}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.HasPrefix(s.URL, "https://localhost:") || s.Issuer() != s.URL+"/" {
		t.Fatalf("URL %q issuer %q", s.URL, s.Issuer())
	}
	s.Handle("/api/private", s.Protect(aud, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })))
	s.Handle("/oauth/token", http.NotFoundHandler()) // cannot replace the issuer's route
	c := s.Client()
	a := post(t, c, s.TokenURL(), map[string][]string{"grant_type": {"client_credentials"}, "client_id": {"svc"}, "client_secret": {"pw"}, "audience": {aud}})
	tok, _ := a.body["access_token"].(string)
	if a.status != 200 || tok == "" {
		t.Fatalf("token over TLS: %+v", a)
	}
	get := func(auth string) (int, string) {
		req, _ := http.NewRequest("GET", s.URL+"/api/private", nil)
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(tok); code != 200 || body != "hello" {
		t.Fatalf("with token: %d %q", code, body)
	}
	if code, _ := get(""); code != 401 {
		t.Fatalf("without token: %d", code)
	}
	resp, _ := c.Get(s.URL + "/nothing")
	if resp.StatusCode != 404 {
		t.Fatalf("unknown path: %d", resp.StatusCode)
	}
	resp.Body.Close()
}

// TestListenConfigClientCertificates: an issuer on its own listener that
// asks for client certificates, as m2mtoken serve runs one, takes both
// methods: a certificate from ClientCAs, and a self-signed one. With the
// CAs in the TLS config instead, the server names them in the handshake,
// and Go's client holds a self-signed certificate back: the token
// endpoint sees none, and says so.
func TestListenConfigClientCertificates(t *testing.T) {
	ca := NewCA("clients")
	server, err := ca.Issue(&x509.Certificate{Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if err != nil {
		t.Fatal(err)
	}
	fromCA := issue(t, ca, subject("svc"))
	selfMade := issue(t, nil, subject("self"))
	clients := []Client{
		{ID: "svc", Audiences: []string{aud}, Certificate: ClientCertificate{SubjectDN: "CN=svc"}},
		{ID: "self", Audiences: []string{aud}, Certificate: ClientCertificate{SelfSigned: selfMade.Leaf}},
	}
	for _, caInTLS := range []bool{false, true} {
		lc := ListenConfig{Addr: "127.0.0.1:0", Host: "localhost", ClientCAs: ca.Pool(),
			TLS: &tls.Config{Certificates: []tls.Certificate{server}, ClientAuth: tls.RequestClientCert}}
		if caInTLS {
			lc.ClientCAs, lc.TLS.ClientCAs = nil, ca.Pool()
		}
		s, err := lc.Listen(clients...)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if a := post(t, s.CertificateClient(fromCA), s.TokenURL(), certForm("svc")); a.status != 200 {
			t.Errorf("CAs in the TLS config %v: tls_client_auth: %d %v", caInTLS, a.status, a.body["error_description"])
		}
		a := post(t, s.CertificateClient(selfMade), s.TokenURL(), certForm("self"))
		if caInTLS {
			wantRefused(t, "self-signed, CAs named in the handshake", a, 401, "invalid_client", "presented none")
		} else if a.status != 200 {
			t.Errorf("self-signed: %d %v", a.status, a.body["error_description"])
		}
	}
}
