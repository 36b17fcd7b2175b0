// Credentials that change while the server runs: a client's secret
// rotated as Auth0 rotates one, and its Private Key JWT credentials added
// and removed.

package m2mtest

import (
	"crypto"
	"errors"
	"fmt"
	"slices"
	"time"
)

// clientState is a registered client and the credentials it holds now.
type clientState struct {
	Client
	secrets []secretWindow
	keys    []Key
	trusts  []TrustedIssuer
	certs   []ClientCertificate
}

// secretWindow is a secret and when it works: from (zero: always had)
// until (zero: no end), by the server's clock.
type secretWindow struct {
	secret      string
	from, until time.Time
}

func newClientState(c Client) *clientState {
	cs := &clientState{Client: c}
	if c.Secret != "" {
		cs.secrets = []secretWindow{{secret: c.Secret}}
	}
	if c.PublicKey != nil {
		cs.keys = []Key{{PublicKey: c.PublicKey}}
	}
	if c.Certificate != (ClientCertificate{}) {
		cs.certs = []ClientCertificate{c.Certificate}
	}
	return cs
}

// acceptsSecret reports whether secret works for the client at now. Every
// window is compared, so that the time taken says nothing about which one
// matched.
func (cs *clientState) acceptsSecret(secret string, now time.Time) bool {
	ok := false
	for _, w := range cs.secrets {
		if constantTimeEqual(secret, w.secret) && !now.Before(w.from) && (w.until.IsZero() || now.Before(w.until)) {
			ok = true
		}
	}
	return ok && secret != ""
}

// Rotation says when a rotated secret changes hands, counted from the
// rotation by the server's clock (see [Server.SetClock]). The zero
// Rotation switches at once: the previous secret is refused and the new
// one accepted from the moment of the rotation, as Auth0's rotate-secret
// does.
type Rotation struct {
	// OldFor is how long the previous secret keeps working: a grace
	// period, as a staged rotation or Okta's two active secrets give.
	OldFor time.Duration
	// NewAfter is how long the new secret waits before it works, as
	// Auth0's "new secrets may be delayed up to thirty seconds while
	// rotating". With NewAfter longer than OldFor, neither secret works in
	// between.
	NewAfter time.Duration
}

// RotateSecret gives clientID the secret secret, by r: the previous
// secret (and a new one of an earlier rotation that has not started yet)
// stops working after r.OldFor, and secret starts working after
// r.NewAfter. Both orders of a rotation can be rehearsed: the issuer
// refusing the old secret before the client has the new one (the zero
// Rotation), and the client sending the new secret before the issuer takes
// it (NewAfter). A refused secret gets the answer any wrong secret gets,
// 401 access_denied "Unauthorized", as on Auth0.
func (s *Server) RotateSecret(clientID, secret string, r Rotation) error {
	if secret == "" {
		return errors.New("m2mtest: RotateSecret: the new secret is empty")
	}
	if r.OldFor < 0 || r.NewAfter < 0 {
		return fmt.Errorf("m2mtest: RotateSecret: OldFor (%v) and NewAfter (%v) cannot be negative", r.OldFor, r.NewAfter)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cs, err := s.client(clientID)
	if err != nil {
		return err
	}
	now := s.now()
	end := now.Add(r.OldFor)
	kept := cs.secrets[:0]
	for _, w := range cs.secrets {
		if w.until.IsZero() || w.until.After(end) {
			w.until = end
		}
		if w.until.After(now) && w.from.Before(w.until) {
			kept = append(kept, w)
		}
	}
	cs.secrets = append(kept, secretWindow{secret: secret, from: now.Add(r.NewAfter)})
	cs.Secret = secret
	return nil
}

// AddKey registers k as one more of clientID's Private Key JWT
// credentials. A client holds at most two, as on Auth0, so that a key is
// rotated in three steps: add the new key, switch the client to it, then
// [Server.RemoveKey] the old one. While both are registered, an assertion
// signed with either is accepted; one whose header names a kid is checked
// with the key of that ID (or keys with none).
func (s *Server) AddKey(clientID string, k Key) error {
	if err := checkKey(k); err != nil {
		return fmt.Errorf("m2mtest: AddKey: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cs, err := s.client(clientID)
	if err != nil {
		return err
	}
	for _, old := range cs.keys {
		switch {
		case samePublicKey(old.PublicKey, k.PublicKey):
			return fmt.Errorf("m2mtest: AddKey: client %q already holds this key", clientID)
		case k.ID != "" && old.ID == k.ID:
			return fmt.Errorf("m2mtest: AddKey: client %q already holds a key with kid %q", clientID, k.ID)
		}
	}
	if len(cs.keys) >= maxCredentials {
		return fmt.Errorf("m2mtest: AddKey: client %q already holds %d credentials, Auth0's limit: remove one first", clientID, maxCredentials)
	}
	cs.keys = append(cs.keys, k)
	return nil
}

// RemoveKey removes the credential whose public key is pub from
// clientID's; assertions signed with it are refused from then on.
func (s *Server) RemoveKey(clientID string, pub crypto.PublicKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs, err := s.client(clientID)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(cs.keys, func(k Key) bool { return samePublicKey(k.PublicKey, pub) })
	if i < 0 {
		return fmt.Errorf("m2mtest: RemoveKey: client %q holds no such key", clientID)
	}
	cs.keys = slices.Delete(cs.keys, i, i+1)
	return nil
}

// Keys returns clientID's Private Key JWT credentials, oldest first.
func (s *Server) Keys(clientID string) []Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cs := s.clients[clientID]; cs != nil {
		return slices.Clone(cs.keys)
	}
	return nil
}

// client returns the registered client clientID. s.mu is held.
func (s *Server) client(clientID string) (*clientState, error) {
	cs := s.clients[clientID]
	if cs == nil {
		return nil, fmt.Errorf("m2mtest: no client %q is registered", clientID)
	}
	return cs, nil
}

func samePublicKey(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}
