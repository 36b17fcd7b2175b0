// Mutual TLS (RFC 8705): clients that authenticate with their TLS client
// certificate (tls_client_auth, self_signed_tls_client_auth), the mTLS
// endpoint alias Auth0 serves them at, and tokens bound to the
// certificate.

package m2mtest

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
)

// The client authentication methods of RFC 8705 section 2.
const (
	tlsClientAuth        = "tls_client_auth"
	selfSignedClientAuth = "self_signed_tls_client_auth"
)

// ClientCertificate is one of a client's mTLS credentials (RFC 8705
// section 2): what the TLS client certificate of a token request must be
// for the client to authenticate with it, sending its client_id and no
// secret or assertion. Set SelfSigned (self_signed_tls_client_auth), or
// one of the others (tls_client_auth), as Auth0 registers a certificate's
// PEM or a subject DN.
type ClientCertificate struct {
	// SelfSigned is a certificate registered for the client
	// (self_signed_tls_client_auth, section 2.2): the request's
	// certificate must be this one, byte for byte, and within its dates
	// by the server's clock; no chain is checked.
	SelfSigned *x509.Certificate
	// SubjectDN is the subject distinguished name a certificate from one
	// of the server's client CAs must have (tls_client_auth, section
	// 2.1; Auth0's subject_dn, RFC 8705's tls_client_auth_subject_dn):
	// RFC 4514, such as "CN=billing,O=Example Corp,C=US", or OpenSSL's
	// "/C=US/O=Example Corp/CN=billing". Its attributes are compared with
	// the certificate's in any order (OpenSSL and RFC 4514 print them in
	// opposite orders), their values exactly.
	SubjectDN string
	// DNS, URI, IP and Email are, instead, a subject alternative name the
	// CA-issued certificate must have (tls_client_auth_san_dns, _san_uri,
	// _san_ip, _san_email), such as a SPIFFE ID as URI.
	DNS, URI, IP, Email string
}

// method is the client authentication method c is a credential of.
func (c ClientCertificate) method() string {
	if c.SelfSigned != nil {
		return selfSignedClientAuth
	}
	return tlsClientAuth
}

// check says what is wrong with c, if anything.
func (c ClientCertificate) check() error {
	set := 0
	for _, v := range []string{c.SubjectDN, c.DNS, c.URI, c.IP, c.Email} {
		if v != "" {
			set++
		}
	}
	if c.SelfSigned != nil {
		set++
	}
	switch {
	case set == 0:
		return errors.New("the ClientCertificate is empty: set SelfSigned, SubjectDN, DNS, URI, IP or Email")
	case set > 1:
		return errors.New("the ClientCertificate sets more than one of SelfSigned, SubjectDN, DNS, URI, IP and Email: a credential is one of them (register two with AddCertificate)")
	case c.SelfSigned != nil && len(c.SelfSigned.Raw) == 0:
		return errors.New("the SelfSigned certificate is empty: use one that x509.ParseCertificate returned")
	case c.IP != "" && net.ParseIP(c.IP) == nil:
		return fmt.Errorf("IP %q is not an IP address", clip(c.IP))
	case c.SubjectDN != "":
		if _, err := parseDN(c.SubjectDN); err != nil {
			return fmt.Errorf("SubjectDN %q: %w", clip(c.SubjectDN), err)
		}
	}
	return nil
}

// same reports whether c and o are the same credential.
func (c ClientCertificate) same(o ClientCertificate) bool {
	if (c.SelfSigned == nil) != (o.SelfSigned == nil) {
		return false
	}
	if c.SelfSigned != nil {
		return c.SelfSigned.Equal(o.SelfSigned)
	}
	return c.SubjectDN == o.SubjectDN && c.DNS == o.DNS && c.URI == o.URI && c.IP == o.IP && c.Email == o.Email
}

// String names the credential, for errors: the method, and the subject or
// the certificate's thumbprint.
func (c ClientCertificate) String() string {
	switch {
	case c.SelfSigned != nil:
		return "self-signed certificate x5t#S256 " + thumbprint(c.SelfSigned)
	case c.SubjectDN != "":
		return fmt.Sprintf("subject DN %q", c.SubjectDN)
	case c.DNS != "":
		return fmt.Sprintf("DNS name %q", c.DNS)
	case c.URI != "":
		return fmt.Sprintf("URI %q", c.URI)
	case c.IP != "":
		return fmt.Sprintf("IP address %s", c.IP)
	case c.Email != "":
		return fmt.Sprintf("email address %q", c.Email)
	}
	return "no certificate"
}

// thumbprint is a certificate's x5t#S256 (RFC 8705 section 3.1): the
// base64url SHA-256 of its DER.
func thumbprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return b64(sum[:])
}

// CertificateBinding says which of a client's tokens are bound to the
// certificate of their token request (RFC 8705 section 3): such a token
// carries cnf.x5t#S256, the certificate's SHA-256 thumbprint, and
// [Server.VerifyRequest] accepts it only over a connection with that
// certificate.
type CertificateBinding int

const (
	// BindWithCertificateAuth, the default, binds the tokens of a request
	// in which the client authenticated with its certificate, as Auth0
	// does for a client with tls_client_certificate_bound_access_tokens;
	// a secret or an assertion gets unbound tokens.
	BindWithCertificateAuth CertificateBinding = iota
	// BindAlways binds every token to the request's certificate, however
	// the client authenticated (a secret or a Private Key JWT sent over
	// mTLS, as FAPI asks); a token request without a certificate is
	// refused (400 invalid_request).
	BindAlways
	// BindNever issues unbound tokens, even to a client that
	// authenticated with its certificate.
	BindNever
)

// NewMTLSServer starts an issuer over https that requires every client to
// present a certificate signed by one of clientCAs, as Auth0's mTLS endpoint
// alias does. A client may authenticate with that certificate
// ([Client.Certificate], tls_client_auth), or still with a secret or an
// assertion. A self-signed certificate gets through the handshake only if
// clientCAs holds it; [NewMTLSAliasServer] takes any.
func NewMTLSServer(clientCAs *x509.CertPool, clients ...Client) *Server {
	s := newServer(clients)
	s.clientCAs = clientCAs
	srv := httptest.NewUnstartedServer(s)
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCAs}
	s.start(srv, true)
	return s
}

// NewMTLSAliasServer starts an issuer as an Auth0 tenant with mTLS runs
// one: over https at URL, whose connections carry no client certificate,
// and at an mTLS endpoint alias, [Server.MTLSTokenURL], that the discovery
// document names in mtls_endpoint_aliases, whose connections are asked
// for one. The alias takes any certificate at the handshake, or none, and
// the token endpoint checks it for the client that names itself: one of
// its registered self-signed certificates, or one that chains to
// clientCAs (nil: no CA is trusted, for self-signed certificates only)
// and has the client's subject. The token URL answers a client that
// authenticates with its certificate with where to send it instead.
// Clients with secrets or assertions are served at both; the routes added
// with [Server.Handle] are served at both, so an API there sees the
// certificate of a request to the alias.
func NewMTLSAliasServer(clientCAs *x509.CertPool, clients ...Client) *Server {
	s := newServer(clients)
	s.clientCAs = clientCAs
	s.alias = httptest.NewUnstartedServer(s)
	s.alias.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	s.alias.StartTLS()
	s.start(httptest.NewUnstartedServer(s), true)
	return s
}

// MTLSTokenURL is the token endpoint at the mTLS endpoint alias of a
// server [NewMTLSAliasServer] started, for Config.MTLSTokenURL; "" for
// any other server.
func (s *Server) MTLSTokenURL() string {
	if s.alias == nil {
		return ""
	}
	return s.alias.URL + "/oauth/token"
}

// tokenURLOf is the token URL r was sent to: the mTLS alias's, if it
// came through the alias's listener, else the server's.
func (s *Server) tokenURLOf(r *http.Request) string {
	if s.alias != nil {
		if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok && a.String() == s.alias.Listener.Addr().String() {
			return s.MTLSTokenURL()
		}
	}
	return s.TokenURL()
}

// Certificate is the TLS server's certificate, for a client's RootCAs; nil
// for a plain http server.
func (s *Server) Certificate() *x509.Certificate { return s.srv.Certificate() }

// CertificateClient returns an http.Client that trusts the server's
// certificate, as [Server.Client] does, and presents cert as its TLS
// client certificate: to the token endpoint, the mTLS alias and an API
// (on any address) that asks for one.
func (s *Server) CertificateClient(cert tls.Certificate) *http.Client {
	tr := s.srv.Client().Transport.(*http.Transport).Clone()
	if tr.TLSClientConfig == nil { // a plain http server's
		tr.TLSClientConfig = &tls.Config{}
	}
	tr.TLSClientConfig.Certificates = []tls.Certificate{cert}
	s.mu.Lock()
	s.transports = append(s.transports, tr)
	s.mu.Unlock()
	return &http.Client{Transport: tr}
}

// AddCertificate registers c as one more of clientID's mTLS credentials. A
// client holds at most two, as on Auth0, so that a credential is rotated
// in three steps: add the new one, switch the client to its certificate,
// then [Server.RemoveCertificate] the old one. While both are registered,
// a certificate that either accepts authenticates the client.
func (s *Server) AddCertificate(clientID string, c ClientCertificate) error {
	if err := c.check(); err != nil {
		return fmt.Errorf("m2mtest: AddCertificate: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cs, err := s.client(clientID)
	if err != nil {
		return err
	}
	if slices.ContainsFunc(cs.certs, c.same) {
		return fmt.Errorf("m2mtest: AddCertificate: client %q already holds the %s", clientID, c)
	}
	if len(cs.certs) >= maxCredentials {
		return fmt.Errorf("m2mtest: AddCertificate: client %q already holds %d certificate credentials, Auth0's limit: remove one first", clientID, maxCredentials)
	}
	cs.certs = append(cs.certs, c)
	return nil
}

// RemoveCertificate removes c from clientID's mTLS credentials; the
// certificates only it accepted are refused from then on.
func (s *Server) RemoveCertificate(clientID string, c ClientCertificate) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs, err := s.client(clientID)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(cs.certs, c.same)
	if i < 0 {
		return fmt.Errorf("m2mtest: RemoveCertificate: client %q holds no %s", clientID, c)
	}
	cs.certs = slices.Delete(cs.certs, i, i+1)
	return nil
}

// Certificates returns clientID's mTLS credentials, oldest first.
func (s *Server) Certificates(clientID string) []ClientCertificate {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cs := s.clients[clientID]; cs != nil {
		return slices.Clone(cs.certs)
	}
	return nil
}

// peerCertificate is the client certificate a request came with, or nil.
func peerCertificate(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil
	}
	return r.TLS.PeerCertificates[0]
}

// checkClientCertificate authenticates client id by the certificate of r
// against its credentials: the error says why it does not.
func (s *Server) checkClientCertificate(r *http.Request, id string, creds []ClientCertificate) error {
	methods := creds[0].method()
	if len(creds) > 1 && creds[1].method() != methods {
		methods += " or " + creds[1].method()
	}
	cert := peerCertificate(r)
	if cert == nil {
		where := "present the client certificate in the TLS handshake of the token request"
		switch {
		case r.TLS == nil:
			where = "send the token request over https, with the client certificate"
		case s.alias != nil && s.tokenURLOf(r) != s.MTLSTokenURL():
			where = "send the token request with the client certificate to the mTLS endpoint alias " + s.MTLSTokenURL() + " (mtls_endpoint_aliases.token_endpoint in the discovery document)"
		}
		return fmt.Errorf("client %q authenticates with its certificate (%s) and the request presented none: %s", id, methods, where)
	}
	var reasons []string
	for _, c := range creds {
		err := s.certificateMatches(cert, r.TLS.PeerCertificates[1:], c)
		if err == nil {
			return nil
		}
		reasons = append(reasons, err.Error())
	}
	return fmt.Errorf("the certificate (subject %q, x5t#S256 %s) is not one client %q accepts: %s", clip(cert.Subject.String()), thumbprint(cert), id, strings.Join(reasons, "; "))
}

// certificateMatches checks cert, with the intermediates the client sent,
// against one credential.
func (s *Server) certificateMatches(cert *x509.Certificate, intermediates []*x509.Certificate, c ClientCertificate) error {
	if err := c.check(); err != nil {
		return fmt.Errorf("the client's %s is not usable: %v", c.method(), err)
	}
	now := s.now()
	if c.SelfSigned != nil {
		switch {
		case !cert.Equal(c.SelfSigned):
			return fmt.Errorf("it is not the registered %s", c)
		case now.Before(cert.NotBefore) || now.After(cert.NotAfter):
			return fmt.Errorf("the registered self-signed certificate is valid from %s to %s, not now", cert.NotBefore.UTC().Format("2006-01-02T15:04:05Z"), cert.NotAfter.UTC().Format("2006-01-02T15:04:05Z"))
		}
		return nil
	}
	if s.clientCAs == nil {
		return fmt.Errorf("tls_client_auth needs a CA the server trusts for client certificates, and this server has none (see NewMTLSServer)")
	}
	pool := x509.NewCertPool()
	for _, ic := range intermediates {
		pool.AddCert(ic)
	}
	_, err := cert.Verify(x509.VerifyOptions{Roots: s.clientCAs, Intermediates: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return fmt.Errorf("tls_client_auth: it does not chain to a CA the server trusts for client certificates: %v", err)
	}
	switch {
	case c.SubjectDN != "":
		want, _ := parseDN(c.SubjectDN)
		if !slices.Equal(want, certDN(cert.Subject)) {
			return fmt.Errorf("tls_client_auth: its subject is not the registered %s", c)
		}
	case c.DNS != "":
		if !slices.ContainsFunc(cert.DNSNames, func(n string) bool { return strings.EqualFold(n, c.DNS) }) {
			return fmt.Errorf("tls_client_auth: it does not name the registered %s (it names %q)", c, cert.DNSNames)
		}
	case c.URI != "":
		if !slices.ContainsFunc(cert.URIs, func(u *url.URL) bool { return u.String() == c.URI }) {
			return fmt.Errorf("tls_client_auth: it does not name the registered %s", c)
		}
	case c.IP != "":
		ip := net.ParseIP(c.IP)
		if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
			return fmt.Errorf("tls_client_auth: it does not name the registered %s (it names %v)", c, cert.IPAddresses)
		}
	case c.Email != "":
		if !slices.Contains(cert.EmailAddresses, c.Email) {
			return fmt.Errorf("tls_client_auth: it does not name the registered %s (it names %q)", c, cert.EmailAddresses)
		}
	}
	return nil
}

// tokenBinding returns the thumbprint to bind a token for c to ("" for an
// unbound token) and whether to go on, answering the error itself.
func (s *Server) tokenBinding(w http.ResponseWriter, r *http.Request, c Client, byCertificate bool) (string, bool) {
	cert := peerCertificate(r)
	switch c.CertificateBinding {
	case BindNever:
		return "", true
	case BindAlways:
		if cert == nil {
			writeError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("Client %q gets certificate-bound tokens: send the token request over mTLS, with a client certificate", c.ID), "")
			return "", false
		}
		return thumbprint(cert), true
	}
	if byCertificate {
		return thumbprint(cert), true
	}
	return "", true
}

// certificateBindingError checks the certificate of r against the
// thumbprint a token is bound to (cnf.x5t#S256), if any; nil if it matches
// or the token is not bound to a certificate.
func certificateBindingError(r *http.Request, cnf map[string]any, scheme string) *RequestError {
	want, bound := cnf["x5t#S256"].(string)
	if _, present := cnf["x5t#S256"]; present && !bound || bound && want == "" {
		return &RequestError{Scheme: scheme, Code: "invalid_token", Description: "the token's cnf.x5t#S256 is not a thumbprint"}
	}
	if !bound {
		return nil
	}
	const fix = ": send it with the client certificate the token was issued to"
	cert := peerCertificate(r)
	switch {
	case r.TLS == nil:
		return &RequestError{Scheme: scheme, Code: "invalid_token", Description: "the token is bound to a client certificate (cnf.x5t#S256) and the request came over plain http, with none" + fix}
	case cert == nil:
		return &RequestError{Scheme: scheme, Code: "invalid_token", Description: "the token is bound to a client certificate (cnf.x5t#S256) and the request presented none" + fix}
	case thumbprint(cert) != want:
		return &RequestError{Scheme: scheme, Code: "invalid_token", Description: fmt.Sprintf("the token is bound to a client certificate (cnf.x5t#S256 %s) and the request presented another (%s)", clip(want), thumbprint(cert)) + fix}
	}
	return nil
}
