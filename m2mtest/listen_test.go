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
