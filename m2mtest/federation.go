// Workload identity federation: a client that authenticates with a token
// a trusted platform issued (a Kubernetes service-account token, a SPIFFE
// JWT-SVID, a CI's OIDC token) as its client assertion, and a Platform
// that issues such tokens for tests.

package m2mtest

import (
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/m2mtoken/m2mtoken/internal/dpop"
	"github.com/m2mtoken/m2mtoken/internal/jwt"
)

const (
	jwtSpiffe = "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe"

	// DefaultAssertionAudience is the aud a [TrustedIssuer] requires
	// unless it names another, and the aud of [Platform.Token]'s tokens
	// unless asked for another: Entra ID's, for its federated identity
	// credentials.
	DefaultAssertionAudience = "api://AzureADTokenExchange"

	// maxTrusts is how many issuers a client may trust, as Entra ID's
	// limit of federated identity credentials per application.
	maxTrusts = 20
)

// TrustedIssuer is a platform whose tokens a client accepts as its client
// assertion, instead of a secret or a key of its own: a federated identity
// credential, as Entra ID and Keycloak have them. The assertion
// must be signed with one of Keys, name Issuer and Subject exactly and
// Audience among its aud, and be within its exp, nbf and iat (iat and
// nbf may be 10 seconds ahead). Unlike the client's own Private Key JWT
// assertions, it may be reused until it expires and needs no jti, as a
// Kubernetes token or a JWT-SVID is; nor is its lifetime limited.
type TrustedIssuer struct {
	// Issuer is the platform's issuer, the assertion's iss, such as
	// "https://kubernetes.default.svc.cluster.local" or
	// "https://token.actions.githubusercontent.com". A SPIFFE trust domain,
	// "spiffe://example.org", trusts JWT-SVIDs of that trust domain: sub
	// must be a SPIFFE ID in it, and iss (which JWT-SVIDs may lack) is not
	// read.
	Issuer string
	// Subject is the assertion's sub, such as
	// "system:serviceaccount:NAMESPACE:NAME" or
	// "spiffe://example.org/ns/prod/sa/billing".
	Subject string
	// Audience must be among the assertion's aud; empty means
	// [DefaultAssertionAudience]. Keycloak and the SPIFFE client
	// authentication draft expect the authorization server's issuer
	// ([Server.Issuer]).
	Audience string
	// Keys are the platform's public keys, at least one: a Kubernetes
	// service-account issuer's keys, a SPIFFE trust bundle's ([ParseKeys]
	// reads them from PEM or a JWKS).
	Keys []Key
}

// trustDomain returns t's SPIFFE trust domain ("spiffe://example.org"),
// or "" if t's issuer is not one.
func (t TrustedIssuer) trustDomain() string {
	if strings.HasPrefix(t.Issuer, "spiffe://") {
		return t.Issuer
	}
	return ""
}

// matchesIssuer reports whether an assertion with iss and sub comes from
// t's issuer.
func (t TrustedIssuer) matchesIssuer(iss, sub string) bool {
	if td := t.trustDomain(); td != "" {
		rest, ok := strings.CutPrefix(sub, td+"/")
		return ok && rest != ""
	}
	return iss == t.Issuer
}

// Trust makes clientID accept tokens of t's issuer for t's subject as its
// client assertion, sent with client_assertion_type
// urn:ietf:params:oauth:client-assertion-type:jwt-bearer or, for a
// JWT-SVID, urn:ietf:params:oauth:client-assertion-type:jwt-spiffe. A
// token request with such an assertion and no client_id is for the one
// client that trusts its issuer and subject. Trusting the same issuer and
// subject again replaces their keys and audience, as when the platform's
// keys rotate. A client may trust up to 20 (issuer, subject) pairs, as on
// Entra ID. Refused assertions get 401 invalid_client with a description
// that says why: the issuer is not trusted, the subject does not match,
// the audience is not the expected one, the signature does not verify,
// or the assertion expired.
func (s *Server) Trust(clientID string, t TrustedIssuer) error {
	if strings.HasPrefix(t.Issuer, "spiffe://") {
		t.Issuer = strings.TrimSuffix(t.Issuer, "/")
		if td := strings.TrimPrefix(t.Issuer, "spiffe://"); td == "" || strings.Contains(td, "/") {
			return fmt.Errorf("m2mtest: Trust: Issuer %q: a SPIFFE trust domain is spiffe://NAME, with no path", t.Issuer)
		}
	}
	switch {
	case t.Issuer == "":
		return errors.New("m2mtest: Trust: Issuer is empty")
	case t.Subject == "":
		return errors.New("m2mtest: Trust: Subject is empty: the subject must match exactly")
	case len(t.Keys) == 0:
		return errors.New("m2mtest: Trust: Keys is empty: give the platform's public keys")
	}
	if td := t.trustDomain(); td != "" && !t.matchesIssuer("", t.Subject) {
		return fmt.Errorf("m2mtest: Trust: Subject %q is not a SPIFFE ID in %s", t.Subject, td)
	}
	for _, k := range t.Keys {
		if err := checkKey(k); err != nil {
			return fmt.Errorf("m2mtest: Trust: %w", err)
		}
	}
	if t.Audience == "" {
		t.Audience = DefaultAssertionAudience
	}
	t.Keys = slices.Clone(t.Keys)
	s.mu.Lock()
	defer s.mu.Unlock()
	cs, err := s.client(clientID)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(cs.trusts, func(o TrustedIssuer) bool { return o.Issuer == t.Issuer && o.Subject == t.Subject })
	if i >= 0 {
		cs.trusts[i] = t
		return nil
	}
	if len(cs.trusts) >= maxTrusts {
		return fmt.Errorf("m2mtest: Trust: client %q already trusts %d issuers and subjects, Entra ID's limit", clientID, maxTrusts)
	}
	cs.trusts = append(cs.trusts, t)
	return nil
}

// trustingClient returns the one client that trusts an assertion from
// iss for sub, for a token request without client_id; "" if none or
// several do.
func (s *Server) trustingClient(iss, sub string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	found := ""
	for id, cs := range s.clients {
		if slices.ContainsFunc(cs.trusts, func(t TrustedIssuer) bool { return t.matchesIssuer(iss, sub) && t.Subject == sub }) {
			if found != "" {
				return ""
			}
			found = id
		}
	}
	return found
}

// checkPlatformAssertion verifies a client assertion that a platform
// issued against the issuers c trusts.
func (s *Server) checkPlatformAssertion(c Client, trusts []TrustedIssuer, assertion, typ string) error {
	var un struct{ Iss, Sub string }
	if err := jwt.Unverified(assertion, &un); err != nil {
		return errors.New("client_assertion is not a JWT")
	}
	if typ == jwtSpiffe && !strings.HasPrefix(un.Sub, "spiffe://") {
		return fmt.Errorf("a jwt-spiffe assertion is a JWT-SVID, whose sub is a SPIFFE ID, not %q", clip(un.Sub))
	}
	if len(trusts) == 0 {
		return fmt.Errorf("client %q trusts no issuer of assertions", c.ID)
	}
	var fromIssuer []TrustedIssuer
	for _, t := range trusts {
		if t.matchesIssuer(un.Iss, un.Sub) {
			fromIssuer = append(fromIssuer, t)
		}
	}
	if len(fromIssuer) == 0 {
		if strings.HasPrefix(un.Sub, "spiffe://") && un.Iss == "" {
			return fmt.Errorf("the trust domain of subject %q is not trusted by client %q", clip(un.Sub), c.ID)
		}
		return fmt.Errorf("issuer %q is not trusted by client %q", clip(un.Iss), c.ID)
	}
	i := slices.IndexFunc(fromIssuer, func(t TrustedIssuer) bool { return t.Subject == un.Sub })
	if i < 0 {
		return fmt.Errorf("subject %q does not match the subject client %q trusts for issuer %q", clip(un.Sub), c.ID, fromIssuer[0].Issuer)
	}
	t := fromIssuer[i]
	var cl struct {
		Aud           any
		Exp, Nbf, Iat float64
	}
	if err := verifyWith(assertion, t.Keys, "the keys trusted for issuer "+t.Issuer, &cl); err != nil {
		return err
	}
	now := s.now()
	exp := time.Unix(int64(cl.Exp), 0)
	switch {
	case !hasAudience(cl.Aud, t.Audience):
		return fmt.Errorf("audience must be %q", t.Audience)
	case cl.Exp == 0:
		return errors.New("client_assertion has no exp")
	case !now.Before(exp):
		return fmt.Errorf("client_assertion expired at %s, %v ago", exp.UTC().Format(time.RFC3339), now.Sub(exp).Round(time.Second))
	case cl.Nbf != 0 && time.Unix(int64(cl.Nbf), 0).After(now.Add(skew)):
		return fmt.Errorf("client_assertion is not valid before %s (nbf)", time.Unix(int64(cl.Nbf), 0).UTC().Format(time.RFC3339))
	case cl.Iat != 0 && time.Unix(int64(cl.Iat), 0).After(now.Add(skew)):
		return errors.New("client_assertion iat is in the future")
	}
	return nil
}

// Platform issues workload identity tokens, as a Kubernetes cluster's
// service-account issuer, a SPIFFE trust domain or a CI's OIDC provider
// does, for tests that write them to files where a client reads its
// assertion, and for a [Server] to trust ([Platform.Trust]). Its key is a
// P-256 key (ES256), made at first use. The zero Platform issues tokens
// with no iss; it is safe for concurrent use.
type Platform struct {
	// Issuer is the iss of its tokens; a SPIFFE trust domain
	// ("spiffe://example.org") makes JWT-SVIDs, which carry no iss.
	Issuer string

	once  sync.Once
	key   *ecdsa.PrivateKey
	jwk   map[string]any
	kid   string
	clock atomic.Pointer[func() time.Time]
}

// NewPlatform returns a Platform whose tokens name issuer.
func NewPlatform(issuer string) *Platform { return &Platform{Issuer: issuer} }

func (p *Platform) init() {
	p.once.Do(func() {
		key := newP256Key()
		k, err := dpop.NewKey(key, jwt.ES256)
		if err != nil {
			panic("m2mtest: " + err.Error()) // a P-256 key always fits ES256
		}
		p.key, p.kid = key, k.Thumbprint()
		json.Unmarshal([]byte(k.JWK()), &p.jwk)
		p.jwk["kid"], p.jwk["use"], p.jwk["alg"] = p.kid, "sig", jwt.ES256
	})
}

// SetClock makes the platform date its tokens by now instead of
// time.Now, as [Server.SetClock] does for the server.
func (p *Platform) SetClock(now func() time.Time) {
	if now == nil {
		now = time.Now
	}
	p.clock.Store(&now)
}

func (p *Platform) now() time.Time {
	if f := p.clock.Load(); f != nil {
		return (*f)()
	}
	return time.Now()
}

// Token returns a token for subject, as the platform would write it to a
// workload's file: iss (none for a SPIFFE trust domain), sub, aud
// (audience, or [DefaultAssertionAudience] if empty), iat, nbf, exp
// lifetime later (an hour if 0, as Kubernetes' shortest projected
// token), and a jti (none in a JWT-SVID).
func (p *Platform) Token(subject, audience string, lifetime time.Duration) (string, error) {
	if audience == "" {
		audience = DefaultAssertionAudience
	}
	if lifetime == 0 {
		lifetime = time.Hour
	}
	now := p.now()
	claims := map[string]any{"sub": subject, "aud": audience, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(lifetime).Unix()}
	if !strings.HasPrefix(p.Issuer, "spiffe://") {
		claims["iss"] = p.Issuer
		claims["jti"] = randomID()
	}
	return p.Sign(claims)
}

// Sign returns a JWT of claims signed with the platform's key (ES256,
// with its kid), for tokens Token does not make: another audience, an
// expired one.
func (p *Platform) Sign(claims map[string]any) (string, error) {
	p.init()
	return jwt.Sign(p.key, jwt.ES256, p.kid, claims)
}

// Key is the platform's public key, with its kid (the key's RFC 7638
// thumbprint).
func (p *Platform) Key() Key {
	p.init()
	return Key{ID: p.kid, PublicKey: &p.key.PublicKey}
}

// Trust is what a [Server] needs to trust the platform's tokens for
// subject, with [DefaultAssertionAudience]: pass it to [Server.Trust].
func (p *Platform) Trust(subject string) TrustedIssuer {
	return TrustedIssuer{Issuer: p.Issuer, Subject: subject, Keys: []Key{p.Key()}}
}

// JWKS is the platform's key set, as its discovery document would serve
// it or a SPIFFE bundle holds it: for a file that m2mtoken serve
// --trust-key reads.
func (p *Platform) JWKS() []byte {
	p.init()
	b, _ := json.Marshal(map[string]any{"keys": []any{p.jwk}})
	return b
}
