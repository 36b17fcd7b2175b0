package m2mtoken

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"maps"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
)

// Transport is an [http.RoundTripper] that authorizes each request with a
// token from Source. It drops in where an [oauth2.Transport] was, and
// adds two things to it:
//
//   - A 401 answer that says the token is bad (a Bearer challenge with
//     error="invalid_token", or no challenge at all) invalidates that token,
//     and the request is sent once more with a new one, if its body can be
//     replayed (it has none, or has GetBody). Never more than once.
//   - With a source that has TokenContext (such as [*TokenSource]), waiting
//     for a token ends with the request's context.
//
// Recovery needs a source with an Invalidate(*oauth2.Token) method, such as
// [*TokenSource]; the source also limits how often a token can be dropped
// ([Config.MinInvalidateInterval], backed off up to an hour while the API
// keeps rejecting the new tokens), so that an API that rejects every token
// gets its 401 passed to the caller instead of costing a token request per
// API request.
//
// With a DPoP-bound token (a source with [Config.DPoPKey]), each request
// carries "Authorization: DPoP <token>" and a new DPoP proof for its
// method and URL; a 401 that asks for the API's nonce
// (WWW-Authenticate: DPoP error="use_dpop_nonce", with DPoP-Nonce) is sent
// once more with it, under the same body rules. The API's nonce is kept
// per origin and never mixed with the token endpoint's.
//
// If no token can be had, RoundTrip returns the error and sends nothing.
type Transport struct {
	// Source supplies tokens. It must not be nil.
	Source oauth2.TokenSource
	// Base sends the authorized requests; nil means [http.DefaultTransport].
	Base http.RoundTripper

	// last caches the header value for the last token, so that the common
	// case builds no string.
	last atomic.Pointer[authValue]
	// lastDPoP does the same, and caches ath, for a DPoP-bound token.
	lastDPoP atomic.Pointer[dpopValue]
}

type authValue struct {
	tok *oauth2.Token
	val []string
}

type contextTokenSource interface {
	TokenContext(context.Context) (*oauth2.Token, error)
}

type invalidator interface {
	Invalidate(*oauth2.Token)
}

// RoundTrip authorizes a copy of req (req itself is not modified) and sends
// it through Base, recovering once from a 401 as the type's doc says.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.Source == nil {
		return nil, refused(req, errors.New("m2mtoken: Transport.Source is nil"))
	}
	tok, err := token(t.Source, req.Context())
	if err != nil {
		return nil, refused(req, err)
	}
	return t.send(t.Source, req, tok)
}

// refused closes the body of a request that is not sent, as a
// RoundTripper must, and returns err.
func refused(req *http.Request, err error) error {
	if req.Body != nil {
		req.Body.Close()
	}
	return err
}

// send authorizes a copy of req with tok, from src, sends it through Base,
// and recovers once from a 401 as the type's doc says. It owns req.Body.
func (t *Transport) send(src oauth2.TokenSource, req *http.Request, tok *oauth2.Token) (*http.Response, error) {
	if isDPoP(tok) {
		return t.roundTripDPoP(src, req, tok)
	}
	resp, err := t.base().RoundTrip(t.authorize(src, req, req.Body, tok))
	if err != nil || resp.StatusCode != http.StatusUnauthorized || !badToken(resp.Header) {
		return resp, err
	}
	inv, ok := src.(invalidator)
	if !ok || (req.Body != nil && req.Body != http.NoBody && req.GetBody == nil) {
		return resp, nil
	}
	inv.Invalidate(tok)
	tok2, err := token(src, req.Context())
	if err != nil || tok2.AccessToken == tok.AccessToken {
		// No new token (the invalidation was rate-limited, or the fetch
		// failed): the caller gets the API's answer.
		return resp, nil
	}
	body := req.Body
	if req.GetBody != nil {
		if body, err = req.GetBody(); err != nil {
			return resp, nil
		}
	}
	// The first answer is replaced: drain a little of it so the connection
	// can be reused, and close it.
	io.CopyN(io.Discard, resp.Body, 4<<10)
	resp.Body.Close()
	return t.base().RoundTrip(t.authorize(src, req, body, tok2))
}

// CloseIdleConnections closes the idle connections of Base, if it has
// such a method (as [*http.Transport] does), so that
// [http.Client.CloseIdleConnections] and [TokenSource.Close] reach the
// connections under a Transport, as they do under other wrapping
// transports.
func (t *Transport) CloseIdleConnections() {
	type closeIdler interface{ CloseIdleConnections() }
	if c, ok := t.base().(closeIdler); ok {
		c.CloseIdleConnections()
	}
}

// token gets a token from src, with ctx if it takes one.
func token(src oauth2.TokenSource, ctx context.Context) (*oauth2.Token, error) {
	if s, ok := src.(*TokenSource); ok {
		return s.TokenContext(ctx)
	}
	if cs, ok := src.(contextTokenSource); ok {
		return cs.TokenContext(ctx)
	}
	return src.Token()
}

func (t *Transport) base() http.RoundTripper {
	if t.Base != nil {
		return t.Base
	}
	return http.DefaultTransport
}

// authorize returns a shallow copy of req with its own header map, the
// Authorization header set, and body as its body. Neither req nor its
// header map is modified.
//
// The header value is cached per token: in the source when it is a
// *TokenSource (a pool's tokens each keep their own), else in t.
func (t *Transport) authorize(src oauth2.TokenSource, req *http.Request, body io.ReadCloser, tok *oauth2.Token) *http.Request {
	last := &t.last
	if s, ok := src.(*TokenSource); ok {
		last = &s.auth
	}
	av := last.Load()
	if av == nil || av.tok != tok {
		av = &authValue{tok: tok, val: []string{tok.Type() + " " + tok.AccessToken}}
		last.Store(av)
	}
	r2 := new(http.Request)
	*r2 = *req
	// maps.Clone copies the table without rehashing: much cheaper than
	// inserting each key, and the copy is ours to change.
	h := maps.Clone(req.Header)
	if h == nil {
		h = make(http.Header, 1)
	}
	// The slice is shared by every request with this token; nothing in
	// net/http writes into header value slices.
	h["Authorization"] = av.val
	r2.Header = h
	r2.Body = body
	return r2
}

// badToken reports whether a 401's challenges say the token itself was
// rejected: no challenge at all, or a Bearer challenge with
// error="invalid_token" (RFC 6750 section 3.1).
func badToken(h http.Header) bool {
	chs := h.Values("Www-Authenticate")
	if len(chs) == 0 {
		return true
	}
	for _, c := range chs {
		c = strings.ToLower(c)
		if strings.Contains(c, "bearer") && (strings.Contains(c, `error="invalid_token"`) || strings.Contains(c, "error=invalid_token")) {
			return true
		}
	}
	return false
}

// clientCertFunc is what a transport presents when a server asks for a
// client certificate (clientCert.forHandshake), or nil for none.
type clientCertFunc func(*tls.CertificateRequestInfo) (*tls.Certificate, error)

// ownTransport is a clone of http.DefaultTransport, for token requests,
// trusting roots (Config.CAFile) besides the system's if not nil, with at
// most maxConns connections per host (Config.MaxConnsPerHost), presenting
// cert if not nil.
func ownTransport(roots *x509.CertPool, maxConns int, cert clientCertFunc) http.RoundTripper {
	t := defaultClone(cert != nil)
	if t == nil {
		return http.DefaultTransport
	}
	t = withTLS(t, roots, cert)
	t.MaxConnsPerHost = maxConns
	t.MaxIdleConnsPerHost = maxConns
	return t
}

// tunedTransport is the transport under Client(): a clone of
// http.DefaultTransport that keeps more idle connections, trusting roots,
// presenting cert if not nil.
func tunedTransport(roots *x509.CertPool, cert clientCertFunc) http.RoundTripper {
	t := defaultClone(cert != nil)
	if t == nil {
		return http.DefaultTransport
	}
	t = withTLS(t, roots, cert)
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 100
	t.IdleConnTimeout = 90 * time.Second
	return t
}

// defaultClone is a clone of http.DefaultTransport, or nil if a program
// replaced it with another RoundTripper: then it is used as it is, unless
// a certificate must be presented (must), which needs a transport of our
// own.
func defaultClone(must bool) *http.Transport {
	if dt, ok := http.DefaultTransport.(*http.Transport); ok {
		return dt.Clone()
	}
	if !must {
		return nil
	}
	return &http.Transport{Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true, MaxIdleConns: 100,
		IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: 10 * time.Second, ExpectContinueTimeout: time.Second}
}

// withTLS makes t trust roots, if not nil, instead of the system's CAs
// alone (roots holds those too), and present cert when a server asks for
// a client certificate, if cert is not nil.
func withTLS(t *http.Transport, roots *x509.CertPool, cert clientCertFunc) *http.Transport {
	if roots == nil && cert == nil {
		return t
	}
	if t.TLSClientConfig == nil {
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if roots != nil {
		t.TLSClientConfig.RootCAs = roots
	}
	if cert != nil {
		t.TLSClientConfig.GetClientCertificate = cert
	}
	return t
}
