// Which errors hold for whom: a permanent error about the client (its
// credentials, its grants, the endpoint) is remembered for every token of
// its pool, one about a request for that token alone, each for
// Config.ErrorCacheTTL, so that a misconfigured service does not hammer
// the endpoint. (Exhausted quotas are quota.go's and client.go's.)

package m2mtoken

import (
	"errors"
	"net/http"
	"time"
)

// clientError reports whether a permanent error is about the client (its
// credentials, its grants, the endpoint) rather than about one request:
// then no token of the pool can succeed, and the error holds for all of
// them. An unknown audience, a missing grant for one API, an invalid scope
// or organization concern one token.
func clientError(err error) bool {
	var te *TokenError
	if !errors.As(err, &te) {
		return false
	}
	switch {
	case te.Code == "invalid_client", te.Code == "unauthorized_client":
		return true
	case te.StatusCode == http.StatusUnauthorized && te.Code == "access_denied":
		return true // Auth0's "Unauthorized": a wrong secret or key
	case te.StatusCode == 0:
		return true // a host that does not exist, a certificate that does not verify
	case te.StatusCode >= 200 && te.StatusCode < 400:
		return true // not a token endpoint's answer, or a redirect
	case te.Code == "" && (te.StatusCode == http.StatusNotFound || te.StatusCode == http.StatusMethodNotAllowed):
		return true // not a token endpoint
	}
	return false
}

// heldError is a permanent error remembered until a time. Its owner's
// mutex guards it.
type heldError struct {
	err   error
	until time.Time
}

// at returns the error if it still holds at now, and forgets it if not.
func (h *heldError) at(now time.Time) error {
	if h.err != nil && now.Before(h.until) {
		return h.err
	}
	h.err = nil
	return nil
}

// remember keeps a permanent client error for Config.ErrorCacheTTL.
func (c *client) remember(err error, until time.Time) {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	c.err = heldError{err, until}
}

// rememberedError returns the client's permanent error, if it still holds.
func (c *client) rememberedError() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.err.at(c.clock.Now())
}

// remember keeps a permanent error for Config.ErrorCacheTTL: for every
// token of the pool if it is about the client (see clientError), else for
// this token alone.
func (s *TokenSource) remember(err error) {
	until := s.c.clock.Now().Add(s.c.cfg.ErrorCacheTTL)
	if clientError(err) {
		s.c.remember(err, until)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.perm = heldError{err, until}
}

// rememberedError returns the permanent error that holds for this token:
// the client's, or its own.
func (s *TokenSource) rememberedError() error {
	if err := s.c.rememberedError(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.perm.at(s.c.clock.Now())
}
