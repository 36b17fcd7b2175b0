// Tests of mutual TLS (RFC 8705): clients that authenticate with their
// certificate, its rotation, tokens bound to it, and the APIs that check
// the binding.

package m2mtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/m2mtoken/m2mtoken/internal/jwt"
)

// issue makes a client certificate from ca (or a self-signed one, for a
// nil ca) for tmpl.
func issue(t *testing.T, ca *CA, tmpl x509.Certificate) tls.Certificate {
	t.Helper()
	var cert tls.Certificate
	var err error
	if ca != nil {
		cert, err = ca.Issue(&tmpl)
	} else {
		cert, err = SelfSigned(&tmpl)
	}
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func subject(cn string, org ...string) x509.Certificate {
	return x509.Certificate{Subject: pkix.Name{CommonName: cn, Organization: org}}
}

// certForm is a token request that authenticates with the client's
// certificate: client_id, and no secret or assertion.
func certForm(id string) url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "audience": {aud}}
}

// x5t is the certificate's thumbprint, computed here as RFC 8705 section
// 3.1 defines it.
func x5t(cert tls.Certificate) string {
	sum := sha256.Sum256(cert.Certificate[0])
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// cnfOf is the cnf claim of an issued token, or nil.
func cnfOf(t *testing.T, a answer) map[string]any {
	t.Helper()
	tok, _ := a.body["access_token"].(string)
	var claims struct{ Cnf map[string]any }
	if err := jwt.Unverified(tok, &claims); err != nil {
		t.Fatalf("token %d %v: %v", a.status, a.body, err)
	}
	return claims.Cnf
}

func wantRefused(t *testing.T, what string, a answer, status int, code string, desc ...string) {
	t.Helper()
	d, _ := a.body["error_description"].(string)
	if a.status != status || a.body["error"] != code {
		t.Errorf("%s: %d %v %q, want %d %s", what, a.status, a.body["error"], d, status, code) // never the token
		return
	}
	for _, want := range desc {
		if !strings.Contains(d, want) {
			t.Errorf("%s: %q, want it to say %q", what, d, want)
		}
	}
}

// TestTLSClientAuth: a client authenticates with a certificate from a CA
// the server trusts whose subject is the one registered, as Auth0 checks
// a subject DN or RFC 8705 a subject alternative name, at the mTLS alias;
// the token is bound to the certificate. A certificate with the right
// subject from a CA of the caller's own making, another subject, one
// past its NotAfter by the server's clock, and none at all are refused,
// each saying why.
func TestTLSClientAuth(t *testing.T) {
	ca := NewCA("clients")
	s := NewMTLSAliasServer(ca.Pool(),
		Client{ID: "svc", Audiences: []string{aud}, Certificate: ClientCertificate{SubjectDN: "CN=svc,O=Example"}},
		Client{ID: "spiffe", Audiences: []string{aud}, Certificate: ClientCertificate{URI: "spiffe://example.org/billing"}},
		Client{ID: "dns", Audiences: []string{aud}, Certificate: ClientCertificate{DNS: "billing.internal"}},
		Client{ID: "ip", Audiences: []string{aud}, Certificate: ClientCertificate{IP: "10.0.0.7"}},
		Client{ID: "mail", Audiences: []string{aud}, Certificate: ClientCertificate{Email: "billing@example.com"}},
	)
	defer s.Close()
	if s.MTLSTokenURL() == "" || s.MTLSTokenURL() == s.TokenURL() {
		t.Fatalf("MTLSTokenURL %q beside %q", s.MTLSTokenURL(), s.TokenURL())
	}
	good := issue(t, ca, subject("svc", "Example"))
	a := post(t, s.CertificateClient(good), s.MTLSTokenURL(), certForm("svc"))
	if a.status != 200 || a.body["token_type"] != "Bearer" {
		t.Fatalf("tls_client_auth: %d %v", a.status, a.body)
	}
	if cnf := cnfOf(t, a); cnf["x5t#S256"] != x5t(good) || len(cnf) != 1 {
		t.Fatalf("cnf %v, want x5t#S256 %s", cnf, x5t(good))
	}

	spiffeID, _ := url.Parse("spiffe://example.org/billing")
	for id, tmpl := range map[string]x509.Certificate{
		"spiffe": {URIs: []*url.URL{spiffeID}},
		"dns":    {DNSNames: []string{"Billing.Internal"}},
		"ip":     {IPAddresses: []net.IP{net.ParseIP("10.0.0.7")}},
		"mail":   {EmailAddresses: []string{"billing@example.com"}},
	} {
		if a := post(t, s.CertificateClient(issue(t, ca, tmpl)), s.MTLSTokenURL(), certForm(id)); a.status != 200 {
			t.Errorf("%s: %d %v", id, a.status, a.body)
		}
		// The same certificate does not name the svc client's subject.
		if a := post(t, s.CertificateClient(issue(t, ca, tmpl)), s.MTLSTokenURL(), certForm("svc")); a.status != 401 {
			t.Errorf("%s's certificate for svc: %d %v", id, a.status, a.body)
		}
	}

	// The attacker's own CA issues a certificate with the right subject.
	forged := issue(t, NewCA("clients"), subject("svc", "Example"))
	selfMade := issue(t, nil, subject("svc", "Example"))
	for name, cert := range map[string]tls.Certificate{"another CA": forged, "self-signed": selfMade} {
		a := post(t, s.CertificateClient(cert), s.MTLSTokenURL(), certForm("svc"))
		wantRefused(t, name, a, 401, "invalid_client", "Invalid client certificate: ", "does not chain to a CA the server trusts")
	}
	a = post(t, s.CertificateClient(issue(t, ca, subject("other", "Example"))), s.MTLSTokenURL(), certForm("svc"))
	wantRefused(t, "another subject", a, 401, "invalid_client", `subject "CN=other,O=Example"`, `its subject is not the registered subject DN "CN=svc,O=Example"`)
	a = post(t, s.CertificateClient(issue(t, ca, x509.Certificate{URIs: []*url.URL{{Scheme: "spiffe", Host: "example.org", Path: "/search"}}})), s.MTLSTokenURL(), certForm("spiffe"))
	wantRefused(t, "another SPIFFE ID", a, 401, "invalid_client", `does not name the registered URI "spiffe://example.org/billing"`)

	a = post(t, s.Client(), s.MTLSTokenURL(), certForm("svc"))
	wantRefused(t, "no certificate at the alias", a, 401, "invalid_client", `client "svc" authenticates with its certificate (tls_client_auth) and the request presented none`)
	a = post(t, s.Client(), s.TokenURL(), certForm("svc"))
	wantRefused(t, "the token URL, not the alias", a, 401, "invalid_client", "to the mTLS endpoint alias "+s.MTLSTokenURL())
	plain := NewServer(Client{ID: "svc", Audiences: []string{aud}, Certificate: ClientCertificate{SubjectDN: "CN=svc,O=Example"}})
	defer plain.Close()
	wantRefused(t, "plain http", post(t, plain.CertificateClient(good), plain.TokenURL(), certForm("svc")), 401, "invalid_client", "over https")

	clk := newFakeNow()
	clk.t = good.Leaf.NotAfter.Add(time.Second)
	s.SetClock(clk.now)
	a = post(t, s.CertificateClient(good), s.MTLSTokenURL(), certForm("svc"))
	wantRefused(t, "expired by the server's clock", a, 401, "invalid_client", "expired")
}

// TestSelfSignedTLSClientAuth: a client authenticates with its registered
// self-signed certificate, at an alias that trusts no CA; another
// self-signed certificate with the same subject is refused, and so is
// tls_client_auth there. NewMTLSServer takes a self-signed certificate
// its client CAs hold.
func TestSelfSignedTLSClientAuth(t *testing.T) {
	mine := issue(t, nil, subject("svc"))
	s := NewMTLSAliasServer(nil,
		Client{ID: "svc", Audiences: []string{aud}, Certificate: ClientCertificate{SelfSigned: mine.Leaf}},
		Client{ID: "ca", Audiences: []string{aud}, Certificate: ClientCertificate{SubjectDN: "CN=svc"}},
	)
	defer s.Close()
	a := post(t, s.CertificateClient(mine), s.MTLSTokenURL(), certForm("svc"))
	if a.status != 200 || cnfOf(t, a)["x5t#S256"] != x5t(mine) {
		t.Fatalf("registered self-signed: %d %v", a.status, a.body)
	}
	other := issue(t, nil, subject("svc"))
	a = post(t, s.CertificateClient(other), s.MTLSTokenURL(), certForm("svc"))
	wantRefused(t, "unregistered", a, 401, "invalid_client", "x5t#S256 "+x5t(other), "it is not the registered self-signed certificate x5t#S256 "+x5t(mine))
	a = post(t, s.CertificateClient(mine), s.MTLSTokenURL(), certForm("ca"))
	wantRefused(t, "tls_client_auth without CAs", a, 401, "invalid_client", "tls_client_auth needs a CA the server trusts")

	pool := x509.NewCertPool()
	pool.AddCert(mine.Leaf)
	m := NewMTLSServer(pool, Client{ID: "svc", Audiences: []string{aud}, Certificate: ClientCertificate{SelfSigned: mine.Leaf}})
	defer m.Close()
	if a := post(t, m.CertificateClient(mine), m.TokenURL(), certForm("svc")); a.status != 200 {
		t.Fatalf("NewMTLSServer: %d %v", a.status, a.body)
	}
}

// TestRotateCertificate: a client's certificate rotated as Auth0's two
// credentials allow: the new one added (both work), the old one removed
// (refused from then on); a third, a repeat and a credential that is not
// one are refused with what to do.
func TestRotateCertificate(t *testing.T) {
	ca := NewCA("clients")
	old, next := issue(t, nil, subject("svc")), issue(t, nil, subject("svc"))
	s := NewMTLSAliasServer(ca.Pool(), Client{ID: "svc", Audiences: []string{aud}, Certificate: ClientCertificate{SelfSigned: old.Leaf}})
	defer s.Close()
	works := func(c tls.Certificate) bool {
		return post(t, s.CertificateClient(c), s.MTLSTokenURL(), certForm("svc")).status == 200
	}
	if !works(old) || works(next) {
		t.Fatal("before the rotation")
	}
	if err := s.AddCertificate("svc", ClientCertificate{SelfSigned: next.Leaf}); err != nil {
		t.Fatal(err)
	}
	if !works(old) || !works(next) {
		t.Fatal("both registered")
	}
	for c, want := range map[ClientCertificate]string{
		{SubjectDN: "CN=svc"}:             "already holds 2 certificate credentials, Auth0's limit",
		{SelfSigned: next.Leaf}:           "already holds the self-signed certificate x5t#S256 " + x5t(next),
		{DNS: "a", URI: "b"}:              "more than one of",
		{IP: "not-an-ip"}:                 "is not an IP address",
		{SelfSigned: &x509.Certificate{}}: "empty",
	} {
		if err := s.AddCertificate("svc", c); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("AddCertificate %s: %v, want %q", c, err, want)
		}
	}
	if err := s.RemoveCertificate("svc", ClientCertificate{SelfSigned: old.Leaf}); err != nil {
		t.Fatal(err)
	}
	if works(old) || !works(next) {
		t.Fatal("after the old one was removed")
	}
	if got := s.Certificates("svc"); len(got) != 1 || !got[0].SelfSigned.Equal(next.Leaf) {
		t.Fatalf("Certificates: %v", got)
	}
	if err := s.RemoveCertificate("svc", ClientCertificate{SelfSigned: old.Leaf}); err == nil {
		t.Fatal("removed twice")
	}
	if err := s.AddCertificate("nobody", ClientCertificate{SubjectDN: "CN=x"}); err == nil {
		t.Fatal("a certificate for an unknown client")
	}
	// A client may hold one credential of each method; either works.
	if err := s.AddCertificate("svc", ClientCertificate{SubjectDN: "CN=svc"}); err != nil {
		t.Fatal(err)
	}
	if !works(issue(t, ca, subject("svc"))) || !works(next) {
		t.Fatal("a subject and a self-signed certificate")
	}
	// A credential set on the Client that is not one is said at the token
	// endpoint, the first place a test sees it.
	bad := NewMTLSAliasServer(nil, Client{ID: "svc", Audiences: []string{aud}, Certificate: ClientCertificate{DNS: "a", Email: "b"}})
	defer bad.Close()
	a := post(t, bad.CertificateClient(next), bad.MTLSTokenURL(), certForm("svc"))
	wantRefused(t, "a Client.Certificate that is not one", a, 401, "invalid_client", "more than one of SelfSigned, SubjectDN")
}

// TestMTLSDiscovery: the discovery document of a server with an mTLS
// alias names it, with the two methods and bound tokens; a plain http
// server offers neither.
func TestMTLSDiscovery(t *testing.T) {
	s := NewMTLSAliasServer(nil)
	defer s.Close()
	doc := func(s *Server) map[string]any {
		resp, err := s.Client().Get(s.URL + "/.well-known/openid-configuration")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return m
	}
	d := doc(s)
	aliases, _ := d["mtls_endpoint_aliases"].(map[string]any)
	methods, _ := json.Marshal(d["token_endpoint_auth_methods_supported"])
	if aliases["token_endpoint"] != s.MTLSTokenURL() || d["tls_client_certificate_bound_access_tokens"] != true ||
		!strings.Contains(string(methods), `"tls_client_auth","self_signed_tls_client_auth"`) {
		t.Fatalf("discovery: %v", d)
	}
	plain := NewServer()
	defer plain.Close()
	if d := doc(plain); d["mtls_endpoint_aliases"] != nil || d["tls_client_certificate_bound_access_tokens"] != nil {
		t.Fatalf("plain discovery: %v", d)
	}
}

// TestPrivateKeyJWTAtTheAlias: a Private Key JWT sent to the mTLS alias
// may name the alias's token URL as its aud (RFC 8705 section 5), and
// with BindAlways its token is bound to the connection's certificate.
func TestPrivateKeyJWTAtTheAlias(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	mine := issue(t, nil, subject("pk"))
	s := NewMTLSAliasServer(nil, Client{ID: "pk", PublicKey: key.Public(), Audiences: []string{aud}, CertificateBinding: BindAlways})
	defer s.Close()
	now := time.Now()
	for _, audience := range []string{s.MTLSTokenURL(), s.Issuer()} {
		assertion, err := jwt.Sign(key, "ES256", "", map[string]any{"iss": "pk", "sub": "pk", "aud": audience, "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": randomID()})
		if err != nil {
			t.Fatal(err)
		}
		f := certForm("pk")
		f.Set("client_assertion_type", jwtBearer)
		f.Set("client_assertion", assertion)
		a := post(t, s.CertificateClient(mine), s.MTLSTokenURL(), f)
		if a.status != 200 || cnfOf(t, a)["x5t#S256"] != x5t(mine) {
			t.Errorf("aud %s: %d %v", audience, a.status, a.body["error_description"])
		}
	}
}
