package m2mtest

import (
	"errors"
	"fmt"
	"time"

	"github.com/m2mtoken/m2mtoken/internal/jwt"
)

const jwtBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// maxAssertionLife is the longest exp - now an assertion may have, as on
// Auth0; skew is the clock skew allowed on iat.
const (
	maxAssertionLife = 5 * time.Minute
	skew             = 10 * time.Second
)

// checkAssertion verifies a client assertion for c: one a platform
// issued, if c trusts an issuer and the assertion does not name c as its
// issuer (or it is a JWT-SVID), else c's own Private Key JWT assertion.
func (s *Server) checkAssertion(c Client, keys []Key, trusts []TrustedIssuer, assertion, typ string) error {
	var un struct{ Iss string }
	jwt.Unverified(assertion, &un)
	switch {
	case typ == jwtSpiffe || len(trusts) > 0 && un.Iss != c.ID:
		return s.checkPlatformAssertion(c, trusts, assertion, typ)
	case len(keys) == 0 && len(trusts) == 0:
		return fmt.Errorf("client %q has no registered public key and trusts no issuer of assertions", c.ID)
	}
	return s.checkOwnAssertion(c, keys, assertion)
}

// checkOwnAssertion verifies a private_key_jwt client assertion for c:
// the signature under one of c's keys (the one its kid names, if it names
// one), iss = sub = client ID, aud = the issuer or a token URL, exp in
// the future and at most 5 minutes ahead, iat not in the future, and a
// jti not seen before.
func (s *Server) checkOwnAssertion(c Client, keys []Key, assertion string) error {
	if len(keys) == 0 {
		return errors.New("the client has no registered public key")
	}
	var cl struct {
		Iss, Sub, Jti string
		Aud           any
		Exp, Iat      float64
	}
	if err := verifyWith(assertion, keys, "the client's credentials", &cl); err != nil {
		return err
	}
	now := s.now()
	switch {
	case cl.Iss != c.ID || cl.Sub != c.ID:
		return fmt.Errorf("iss and sub must be the client ID %q", c.ID)
	case !hasAudience(cl.Aud, s.Issuer()) && !hasAudience(cl.Aud, s.TokenURL()) && (s.alias == nil || !hasAudience(cl.Aud, s.MTLSTokenURL())):
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
