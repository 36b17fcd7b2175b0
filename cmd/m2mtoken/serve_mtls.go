// serve's client certificates: a client that authenticates with one
// (--client-cert-auth, RFC 8705), the certificate and key serve makes for
// it, the certificates it registers, and tokens bound to the certificate.

package main

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/m2mtoken/m2mtoken/internal/atomicfile"
	"github.com/m2mtoken/m2mtoken/internal/printable"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// The client authentication methods of RFC 8705, as --client-cert-auth
// and M2MTOKEN_AUTH_METHOD name them.
const (
	tlsClientAuth        = "tls_client_auth"
	selfSignedClientAuth = "self_signed_tls_client_auth"
)

// clientCertLife is how long the client certificate serve makes is valid.
const clientCertLife = 90 * 24 * time.Hour

// certFlags are serve's flags for client certificates.
type certFlags struct {
	method, certOut, keyOut, certFile *string
	bound                             *bool
	set                               map[string]bool // the flags given
}

func addCertFlags(fs *flag.FlagSet) *certFlags {
	return &certFlags{
		method:   fs.String("client-cert-auth", "", "with --tls, the client authenticates with a TLS client certificate instead of a secret: "+tlsClientAuth+" (a certificate from this run's CA whose subject is CN=CLIENT_ID) or "+selfSignedClientAuth+" (a registered certificate)"),
		certOut:  fs.String("client-cert-out", "", "write the client certificate serve makes (PEM) to this file (default: a temporary file, removed at exit)"),
		keyOut:   fs.String("client-key-out", "", "write the client certificate's private key (PEM, readable by its owner only) to this file (default: a temporary file, removed at exit)"),
		certFile: fs.String("client-cert", "", "with --client-cert-auth "+selfSignedClientAuth+", register the certificates in this PEM file (one, or two for a rotation) instead of making one; followed"),
		bound:    fs.Bool("cert-bound-tokens", false, "bind tokens to the client certificate of the token request (cnf.x5t#S256), which the API then requires; the default with --client-cert-auth (--cert-bound-tokens=false turns it off); with a secret, a token request needs a certificate, any (FAPI)"),
	}
}

// check says what is wrong with the flags, for a usage error; useTLS and
// secretGiven are serve's --tls and whether a secret was given.
func (f *certFlags) check(fs *flag.FlagSet, useTLS, secretGiven bool) string {
	f.set = map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })
	given := ""
	for _, name := range []string{"client-cert-auth", "cert-bound-tokens", "client-cert", "client-cert-out", "client-key-out"} {
		if f.set[name] && given == "" && (name != "cert-bound-tokens" || *f.bound) {
			given = "--" + name
		}
	}
	switch {
	case *f.method != "" && *f.method != tlsClientAuth && *f.method != selfSignedClientAuth:
		return fmt.Sprintf("--client-cert-auth %q: want %s (a certificate from serve's CA) or %s (a registered certificate)", *f.method, tlsClientAuth, selfSignedClientAuth)
	case given != "" && !useTLS:
		return given + " needs --tls: a client certificate travels in the TLS handshake"
	case *f.method != "" && secretGiven:
		return "--client-cert-auth replaces the client's secret, as on Auth0: leave out --client-secret and --client-secret-file (for a secret, and tokens bound to the certificate of the token request, give --cert-bound-tokens instead of --client-cert-auth)"
	case *f.certFile != "" && *f.method != selfSignedClientAuth:
		return "--client-cert registers a self-signed certificate: it needs --client-cert-auth " + selfSignedClientAuth
	case *f.certFile != "" && (*f.certOut != "" || *f.keyOut != ""):
		return "--client-cert registers your certificate, and --client-cert-out and --client-key-out write one serve makes: give one or the other"
	case (*f.certOut != "" || *f.keyOut != "") && *f.method == "" && !*f.bound:
		return "--client-cert-out and --client-key-out need --client-cert-auth or --cert-bound-tokens: without them, no client certificate is made"
	}
	return ""
}

// enabled reports whether serve asks for client certificates.
func (f *certFlags) enabled() bool { return *f.method != "" || *f.bound }

// binding is the client's CertificateBinding the flags ask for.
func (f *certFlags) binding() m2mtest.CertificateBinding {
	switch {
	case *f.method != "" && f.set["cert-bound-tokens"] && !*f.bound:
		return m2mtest.BindNever
	case *f.method == "" && *f.bound:
		return m2mtest.BindAlways
	}
	return m2mtest.BindWithCertificateAuth
}

// clientCerts is what serve set up for client certificates.
type clientCerts struct {
	flags *certFlags
	// certPath and keyPath are the files the client reads: the ones serve
	// wrote, or --client-cert (keyPath then empty).
	certPath, keyPath string
	made              *x509.Certificate // the certificate serve made, if it made one
	creds             []m2mtest.ClientCertificate
	follow            *followed // --client-cert
	cleanup           func()
}

// setupClientCerts makes the client's certificate, or reads --client-cert,
// and makes lc ask for client certificates.
func setupClientCerts(f *certFlags, ca *localCA, clientID string, lc *m2mtest.ListenConfig) (*clientCerts, error) {
	cc := &clientCerts{flags: f, cleanup: func() {}}
	// Any certificate may come: the token endpoint checks it for the
	// client. The CAs stay out of the handshake, where naming them would
	// make clients hold a self-signed certificate back.
	lc.TLS.ClientAuth = tls.RequestClientCert
	lc.ClientCAs = ca.Pool()
	if *f.certFile != "" {
		var err error
		if cc.follow, err = startFollowing("--client-cert", *f.certFile, checkCertFile); err != nil {
			return nil, err
		}
		cc.certPath = cc.follow.file.Path()
		cc.creds, _ = selfSignedCreds(cc.follow.content)
		return cc, nil
	}
	var cert tls.Certificate
	var err error
	if *f.method == selfSignedClientAuth {
		now := time.Now()
		cert, err = m2mtest.SelfSigned(&x509.Certificate{Subject: pkix.Name{CommonName: clientID}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(clientCertLife)})
	} else {
		cert, err = ca.clientCert(clientID, clientCertLife)
	}
	if err != nil {
		return nil, err
	}
	cc.made = cert.Leaf
	switch *f.method {
	case tlsClientAuth:
		cc.creds = []m2mtest.ClientCertificate{{SubjectDN: cert.Leaf.Subject.String()}}
	case selfSignedClientAuth:
		cc.creds = []m2mtest.ClientCertificate{{SelfSigned: cert.Leaf}}
	}
	certPEM, keyPEM, err := m2mtest.CertificatePEM(cert)
	if err != nil {
		return nil, err
	}
	cc.certPath, cc.keyPath = *f.certOut, *f.keyOut
	if cc.certPath == "" || cc.keyPath == "" {
		dir, err := os.MkdirTemp("", "m2mtoken-serve-client-*")
		if err != nil {
			return nil, err
		}
		cc.cleanup = func() { os.RemoveAll(dir) }
		if cc.certPath == "" {
			cc.certPath = filepath.Join(dir, "client.pem")
		}
		if cc.keyPath == "" {
			cc.keyPath = filepath.Join(dir, "client-key.pem")
		}
	}
	for _, out := range []struct {
		flag, path string
		data       []byte
		mode       os.FileMode
	}{{"--client-cert-out", cc.certPath, certPEM, 0o644}, {"--client-key-out", cc.keyPath, keyPEM, 0o600}} {
		abs, err := filepath.Abs(out.path)
		if err == nil {
			// A new file renamed into place: a symlink planted at the
			// path is replaced, never followed.
			err = atomicfile.WriteMode(abs, "."+filepath.Base(abs)+".tmp-*", out.data, out.mode, -1)
		}
		if err != nil {
			cc.cleanup()
			return nil, fmt.Errorf("%s: %w", out.flag, err)
		}
		if out.flag == "--client-cert-out" {
			cc.certPath = abs
		} else {
			cc.keyPath = abs
		}
	}
	return cc, nil
}

// register gives the client its credentials, once the server runs: the
// first is the Client's, a second is added.
func (cc *clientCerts) register(s *m2mtest.Server, clientID string) error {
	for _, c := range cc.creds[min(1, len(cc.creds)):] {
		if err := s.AddCertificate(clientID, c); err != nil {
			return err
		}
	}
	return nil
}

// client sets the client's certificate fields.
func (cc *clientCerts) client(c *m2mtest.Client) {
	if cc == nil {
		return
	}
	if len(cc.creds) > 0 {
		c.Certificate = cc.creds[0]
	}
	c.CertificateBinding = cc.flags.binding()
}

// reregister replaces the client's registered self-signed certificates
// with those of --client-cert's new content: the new ones added before
// the old ones go where Auth0's limit of two allows, so that a
// certificate in both stays registered throughout.
func (cc *clientCerts) reregister(s *m2mtest.Server, clientID string, content []byte, logs *serveLog) {
	next, err := selfSignedCreds(content)
	if err != nil {
		logs.printf("warning: --client-cert %s: %v", cc.certPath, err)
		return
	}
	has := func(list []m2mtest.ClientCertificate) func(m2mtest.ClientCertificate) bool {
		return func(c m2mtest.ClientCertificate) bool {
			return slices.ContainsFunc(list, func(o m2mtest.ClientCertificate) bool { return o.SelfSigned.Equal(c.SelfSigned) })
		}
	}
	var pending []m2mtest.ClientCertificate
	for _, c := range next {
		if !has(cc.creds)(c) && (len(pending) > 0 || s.AddCertificate(clientID, c) != nil) {
			pending = append(pending, c)
		}
	}
	for _, c := range cc.creds {
		if !has(next)(c) {
			s.RemoveCertificate(clientID, c)
		}
	}
	for _, c := range pending {
		if err := s.AddCertificate(clientID, c); err != nil {
			logs.printf("warning: --client-cert %s: %v", cc.certPath, err)
		}
	}
	logs.printf("--client-cert %s changed: registered %s (before: %s)", cc.certPath, describeCerts(next), describeCerts(cc.creds))
	cc.creds = next
}

// checkCertFile is what a --client-cert file must hold.
func checkCertFile(b []byte) error { _, err := selfSignedCreds(b); return err }

// selfSignedCreds reads the certificates of a PEM file as credentials for
// self_signed_tls_client_auth: one, or two for a rotation.
func selfSignedCreds(data []byte) ([]m2mtest.ClientCertificate, error) {
	var creds []m2mtest.ClientCertificate
	for rest := data; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			if strings.HasSuffix(block.Type, "PRIVATE KEY") {
				return nil, errors.New("holds a private key: give the certificate only, which is all the server learns")
			}
			return nil, fmt.Errorf("holds a PEM block \"%s\": want CERTIFICATE", printable.Line(block.Type, 60))
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("a certificate does not parse: %v", err)
		}
		creds = append(creds, m2mtest.ClientCertificate{SelfSigned: cert})
	}
	switch {
	case len(creds) == 0:
		return nil, errors.New("holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
	case len(creds) > 2:
		return nil, fmt.Errorf("holds %d certificates: a client may have two registered at a time, as on Auth0", len(creds))
	}
	return creds, nil
}

// describeCerts names certificates for serve's lines, by thumbprint.
func describeCerts(creds []m2mtest.ClientCertificate) string {
	var names []string
	for _, c := range creds {
		names = append(names, "x5t#S256 "+certThumbprint(c.SelfSigned))
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, " and ")
}

// lines are serve's startup lines about client certificates.
func (cc *clientCerts) lines(b *strings.Builder) {
	if cc == nil {
		return
	}
	f := cc.flags
	switch *f.method {
	case tlsClientAuth:
		fmt.Fprintf(b, "auth:      %s, no secret: a certificate from this run's CA with the subject %s, such as the one below\n", tlsClientAuth, cc.creds[0].SubjectDN)
	case selfSignedClientAuth:
		what := "the self-signed certificate below is registered"
		if cc.follow != nil {
			what = fmt.Sprintf("the certificates in %s (followed) are registered: %s", cc.certPath, describeCerts(cc.creds))
		}
		fmt.Fprintf(b, "auth:      %s, no secret: %s\n", selfSignedClientAuth, what)
	}
	if cc.made != nil {
		fmt.Fprintf(b, "cert:      %s (x5t#S256 %s, until %s), key %s\n", cc.certPath, certThumbprint(cc.made), cc.made.NotAfter.UTC().Format("2006-01-02"), cc.keyPath)
	}
	switch f.binding() {
	case m2mtest.BindNever:
		b.WriteString("tokens:    not bound to the client certificate (--cert-bound-tokens=false)\n")
	case m2mtest.BindAlways:
		b.WriteString("tokens:    bound to the client certificate of the token request (cnf.x5t#S256): a token request needs one, any;\n" +
			"           the API accepts a token only with its certificate\n")
	default:
		b.WriteString("tokens:    bound to the client certificate (cnf.x5t#S256); the API accepts a token only with its certificate\n")
	}
}

// exports are the export lines for the client's certificate: the method
// instead of a secret, and the files of the certificate serve made (for
// registered ones, a comment: the client's own files are not serve's).
func (cc *clientCerts) exports(b *strings.Builder) {
	if *cc.flags.method != "" {
		fmt.Fprintf(b, "export M2MTOKEN_AUTH_METHOD=%s\n", *cc.flags.method)
	}
	if cc.keyPath == "" {
		// Registered certificates (--client-cert): the file is the
		// server's list, two while one is rotated, not the client's pair.
		fmt.Fprintf(b, "# and your certificate's files: one of those registered in %s, and its private key:\n", cc.certPath)
		b.WriteString("# export M2MTOKEN_CLIENT_CERT_FILE=...\n# export M2MTOKEN_CLIENT_KEY_FILE=...\n")
		return
	}
	fmt.Fprintf(b, "export M2MTOKEN_CLIENT_CERT_FILE=%s\n", shellQuote(cc.certPath))
	fmt.Fprintf(b, "export M2MTOKEN_CLIENT_KEY_FILE=%s\n", shellQuote(cc.keyPath))
}

// certThumbprint is a certificate's x5t#S256: the base64url SHA-256 of its
// DER, as a bound token's cnf names it.
func certThumbprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
