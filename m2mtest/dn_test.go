package m2mtest

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"strings"
	"testing"
)

// TestSubjectDNForms: a subject DN registered the ways people write one
// (RFC 4514, OpenSSL's order and its slash form, escapes, spaces) matches
// the certificate; values are compared exactly, and what does not parse
// is refused when it is registered.
func TestSubjectDNForms(t *testing.T) {
	ca := NewCA("clients")
	cert := issue(t, ca, x509.Certificate{Subject: pkix.Name{CommonName: "billing, EU", Organization: []string{"Example+Co"}, Country: []string{"US"}}})
	s := NewMTLSAliasServer(ca.Pool(), Client{ID: "svc", Audiences: []string{aud}})
	defer s.Close()
	c := s.CertificateClient(cert)
	for dn, want := range map[string]bool{
		`CN=billing\, EU,O=Example\+Co,C=US`:       true,
		`C=US, O=Example\+Co, CN=billing\2C EU`:    true,
		`/C=US/O=Example\+Co/CN=billing, EU`:       true,
		`cn=billing\, EU;o=Example\+Co;c=US`:       true,
		`2.5.4.3=billing\, EU,O=Example\+Co,C=US`:  true,
		`CN=Billing\, EU,O=Example\+Co,C=US`:       false,
		`CN=billing\, EU,O=Example\+Co`:            false,
		`CN=billing\, EU,O=Example\+Co,C=US,OU=x`:  false,
		`CN=billing\, EU,O=Example\+Co,C=US,C=US2`: false,
	} {
		s.RemoveCertificate("svc", ClientCertificate{SubjectDN: dn})
		if err := s.AddCertificate("svc", ClientCertificate{SubjectDN: dn}); err != nil {
			t.Fatalf("%s: %v", dn, err)
		}
		if got := post(t, c, s.MTLSTokenURL(), certForm("svc")).status == 200; got != want {
			t.Errorf("%s: accepted %v, want %v", dn, got, want)
		}
		s.RemoveCertificate("svc", ClientCertificate{SubjectDN: dn})
	}
	for dn, want := range map[string]string{
		"":               "empty",
		"billing":        `"billing" is not TYPE=VALUE`,
		"XX=billing":     `attribute type "XX" is not known`,
		"CN=#0403616263": "BER",
		"/O=Example+Co":  `"Co" is not TYPE=VALUE`, // + separates an RDN's attributes
		`CN=billing\`:    "lone backslash",
	} {
		err := s.AddCertificate("svc", ClientCertificate{SubjectDN: dn})
		if dn == "" {
			err = s.AddCertificate("svc", ClientCertificate{})
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", dn, err, want)
		}
	}
}
