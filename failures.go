// What a failed token request means, decided here once: whether trying
// again may help (a temporary failure is retried with backoff; a
// permanent one is not), and whom a permanent one concerns (the client,
// so every token of its pool, or one request's token), each remembered
// for Config.ErrorCacheTTL so that a misconfigured service does not
// hammer the endpoint. The hints (hints.go) say what to fix for the same
// classes. A used-up Auth0 quota is quota.go's, and the endpoint's rate
// limit ratehold.go's: both are waited out, not retried.

package m2mtoken

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"
)

// temporaryStatus reports whether an answer with this HTTP status may
// come out otherwise if asked again: a timeout, a rate limit, a server
// error. Any other refusal will be the same.
func temporaryStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
}

// temporaryCode reports whether an OAuth error code says to ask again.
func temporaryCode(code string) bool { return code == "temporarily_unavailable" }

// netFailure is why a token request got no answer, as far as it decides
// whether to try again and what to check.
type netFailure int

const (
	// netOther: a reset or timed-out connection, worth another try.
	netOther netFailure = iota
	// netRefused: a refused connection, perhaps a server still starting;
	// tried again.
	netRefused
	// netNoHost, netBadCert, netNotTLS and netCertRefused will not change
	// in the seconds a fetch retries: a host name that does not exist, a
	// certificate that does not verify, a server that does not speak TLS,
	// a client certificate the server refused in the handshake (or did not
	// get). They are configuration mistakes, and permanent.
	netNoHost
	netBadCert
	netNotTLS
	netCertRefused
)

// classifyNetwork says why a request that got no answer failed.
func classifyNetwork(err error) netFailure {
	var dns *net.DNSError
	if errors.As(err, &dns) && dns.IsNotFound {
		return netNoHost
	}
	var cve *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	if errors.As(err, &cve) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci) {
		return netBadCert
	}
	// net/http turns a tls.RecordHeaderError that looks like HTTP into an
	// error of its own, without a type.
	var rh tls.RecordHeaderError
	if errors.As(err, &rh) || strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return netNotTLS
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return netRefused
	}
	if certAlert(err) {
		return netCertRefused
	}
	return netOther
}

// certAlert reports whether err is the server's TLS alert about the
// client's certificate: bad, unsupported, revoked, expired, unknown, from
// an unknown CA, or required and not sent. With TLS 1.3 it comes after the
// handshake, when the client reads the answer.
func certAlert(err error) bool {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" || op.Err == nil {
		return false
	}
	msg := op.Err.Error()
	return strings.HasPrefix(msg, "tls: ") && strings.Contains(msg, "certificate")
}

// temporary reports whether a request that failed so is tried again.
func (f netFailure) temporary() bool { return f == netOther || f == netRefused }

// badCredentials reports an answer that refuses the client's credentials:
// invalid_client, or Auth0's 401 access_denied ("Unauthorized") for a
// wrong secret or key.
func badCredentials(te *TokenError) bool {
	return te.Code == "invalid_client" || te.StatusCode == http.StatusUnauthorized && te.Code == "access_denied"
}

// grantRefused reports an answer that says the client may not use the
// client-credentials grant.
func grantRefused(te *TokenError) bool { return te.Code == "unauthorized_client" }

// notTokenEndpoint reports an answer that no token endpoint gives: a 404
// or 405 with no OAuth error.
func notTokenEndpoint(te *TokenError) bool {
	return te.Code == "" && (te.StatusCode == http.StatusNotFound || te.StatusCode == http.StatusMethodNotAllowed)
}

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
	case badCredentials(te), grantRefused(te), notTokenEndpoint(te):
		return true
	case te.StatusCode == 0:
		return true // no answer: a host that does not exist, a certificate that does not verify
	case te.StatusCode >= 200 && te.StatusCode < 400:
		return true // not a token endpoint's answer, or a redirect
	}
	return false
}

// heldError is a permanent error remembered until a time, with its own
// lock. The zero value holds nothing.
type heldError struct {
	mu    sync.Mutex
	err   error
	until time.Time
	// cred is the credential refused, for a refusal of the client's
	// credential: a followed one that changes since ends it.
	cred *credValue
}

// hold remembers err, about the credential cred if it refused it, until
// the time until.
func (h *heldError) hold(err error, cred *credValue, until time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.err, h.cred, h.until = err, cred, until
}

// at returns the credential the error refused (if it was a refusal of
// the credential) and the error, if it still holds at now, and forgets it
// if it does not hold.
func (h *heldError) at(now time.Time) (*credValue, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil && now.Before(h.until) {
		return h.cred, h.err
	}
	h.err, h.cred = nil, nil
	return nil, nil
}

// forget drops err, if it is still the one held.
func (h *heldError) forget(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err == err {
		h.err, h.cred = nil, nil
	}
}

// holdError keeps a permanent error for Config.ErrorCacheTTL: for every
// token of the pool if it is about the client (see clientError), else for
// this token alone. v is the credential the refused request carried.
func (s *TokenSource) holdError(err error, v *credValue) {
	until := s.c.clock.Now().Add(s.c.cfg.ErrorCacheTTL)
	if clientError(err) {
		var cred *credValue
		if te := (*TokenError)(nil); errors.As(err, &te) && badCredentials(te) {
			cred = v
		}
		s.c.err.hold(err, cred, until)
		return
	}
	s.perm.hold(err, nil, until)
}

// heldError returns the permanent error that holds for this token: the
// client's, or its own.
func (s *TokenSource) heldError(ctx context.Context) error {
	if err := s.c.heldError(ctx); err != nil {
		return err
	}
	_, err := s.perm.at(s.c.clock.Now())
	return err
}

// heldError returns the client's permanent error, if it still holds: a
// refusal of a followed credential ends as soon as the credential has
// changed (its file is looked at again, at most every credentialLook).
func (c *client) heldError(ctx context.Context) error {
	refused, err := c.err.at(c.clock.Now())
	if err == nil || refused == nil || !c.cred.moved(ctx, refused) {
		return err
	}
	c.err.forget(err)
	c.log.Info("the credential changed since it was refused: its refusal no longer holds", slog.String("setting", c.cred.setting()))
	return nil
}
