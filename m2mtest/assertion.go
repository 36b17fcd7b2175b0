package m2mtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"net/http/httptest"
	"strings"
	"time"
)

const jwtBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// maxAssertionLife is the longest exp - now an assertion may have, as on
// Auth0; skew is the clock skew allowed on iat.
const (
	maxAssertionLife = 5 * time.Minute
	skew             = 10 * time.Second
)

// NewMTLSServer starts an issuer over https that requires every client to
// present a certificate signed by one of clientCAs, as Auth0's mTLS endpoint
// alias does. Clients still authenticate with a secret or an assertion.
func NewMTLSServer(clientCAs *x509.CertPool, clients ...Client) *Server {
	s := newServer(clients)
	srv := httptest.NewUnstartedServer(s)
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCAs}
	s.start(srv, true)
	return s
}

// Certificate is the TLS server's certificate, for a client's RootCAs; nil
// for a plain http server.
func (s *Server) Certificate() *x509.Certificate { return s.srv.Certificate() }

// checkAssertion verifies a private_key_jwt client assertion for c: the
// signature under c.PublicKey, iss = sub = client ID, aud = the issuer or
// the token URL, exp in the future and at most 5 minutes ahead, iat not in
// the future, and a jti not seen before.
func (s *Server) checkAssertion(c Client, assertion string) error {
	if c.PublicKey == nil {
		return errors.New("the client has no registered public key")
	}
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 || len(assertion) > 16<<10 {
		return errors.New("client_assertion is not a JWT")
	}
	var header struct{ Alg string }
	if err := decodePart(parts[0], &header); err != nil {
		return errors.New("client_assertion header does not parse")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return errors.New("client_assertion signature is not base64url")
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := verifySig(c.PublicKey, header.Alg, digest[:], sig); err != nil {
		return err
	}
	var cl struct {
		Iss, Sub, Jti string
		Aud           any
		Exp, Iat      float64
	}
	if err := decodePart(parts[1], &cl); err != nil {
		return errors.New("client_assertion claims do not parse")
	}
	now := s.now()
	switch {
	case cl.Iss != c.ID || cl.Sub != c.ID:
		return fmt.Errorf("iss and sub must be the client ID %q", c.ID)
	case !hasAudience(cl.Aud, s.Issuer()) && !hasAudience(cl.Aud, s.TokenURL()):
		return fmt.Errorf("aud must be %q", s.Issuer())
	case cl.Exp == 0 || time.Unix(int64(cl.Exp), 0).Before(now):
		return errors.New("client_assertion has expired")
	case time.Unix(int64(cl.Exp), 0).After(now.Add(maxAssertionLife + skew)):
		return errors.New("client_assertion exp is more than 5 minutes ahead")
	case cl.Iat != 0 && time.Unix(int64(cl.Iat), 0).After(now.Add(skew)):
		return errors.New("client_assertion iat is in the future")
	case cl.Jti == "":
		return errors.New("client_assertion has no jti")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for jti, exp := range s.seenJTI {
		if exp.Before(now) {
			delete(s.seenJTI, jti)
		}
	}
	if _, replay := s.seenJTI[c.ID+"\x00"+cl.Jti]; replay {
		return errors.New("client_assertion jti has been used before")
	}
	s.seenJTI[c.ID+"\x00"+cl.Jti] = time.Unix(int64(cl.Exp), 0)
	return nil
}

func verifySig(pub crypto.PublicKey, alg string, digest, sig []byte) error {
	bad := errors.New("client_assertion signature does not verify")
	switch k := pub.(type) {
	case *rsa.PublicKey:
		switch alg {
		case "RS256":
			if rsa.VerifyPKCS1v15(k, crypto.SHA256, digest, sig) != nil {
				return bad
			}
			return nil
		case "PS256":
			if rsa.VerifyPSS(k, crypto.SHA256, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto}) != nil {
				return bad
			}
			return nil
		}
	case *ecdsa.PublicKey:
		if alg == "ES256" {
			if len(sig) != 64 || !ecdsa.Verify(k, digest, new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
				return bad
			}
			return nil
		}
	}
	return fmt.Errorf("algorithm %q does not fit the registered key", alg)
}
