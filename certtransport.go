// The transports of a client with a certificate: the token requests',
// one per certificate, so that a token request names the certificate it
// presents (tokenTransport); and the APIs', made anew when the
// certificate changes, with clones for the agent's proxies
// (certTransport).

package m2mtoken

import (
	"context"
	"crypto/tls"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"weak"
)

// tokenTransport sends the token requests of a client with a certificate:
// a transport per certificate, each presenting its own, so that a token
// request goes over a connection that presents the certificate it names
// (withCert), never over one made for the certificate before. The token it
// earns is then known to be bound to that certificate even when the token
// cannot say so (an opaque token). The transport of the certificate before
// is kept for requests already under way, and its idle connections closed
// when a third one comes.
type tokenTransport struct {
	make func(clientCertFunc) *http.Transport
	cc   *clientCert

	mu        sync.Mutex
	cur, prev certConns
}

// certConns is the transport that presents cv.
type certConns struct {
	cv *certValue
	t  *http.Transport
}

type certCtxKey struct{}

// withCert returns ctx naming the certificate a token request presents.
func withCert(ctx context.Context, cv *certValue) context.Context {
	return context.WithValue(ctx, certCtxKey{}, cv)
}

func (t *tokenTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	cv, _ := req.Context().Value(certCtxKey{}).(*certValue)
	if cv == nil {
		cv = t.cc.now()
	}
	return t.forCert(cv).RoundTrip(req)
}

// forCert returns the transport that presents cv, made if needed.
func (t *tokenTransport) forCert(cv *certValue) *http.Transport {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.cur.t != nil && t.cur.cv == cv:
		return t.cur.t
	case t.prev.t != nil && t.prev.cv == cv:
		return t.prev.t
	}
	if t.prev.t != nil {
		t.prev.t.CloseIdleConnections()
	}
	cert := cv.cert
	t.prev, t.cur = t.cur, certConns{cv: cv, t: t.make(func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil })}
	return t.cur.t
}

// CloseIdleConnections closes the idle connections of both transports.
func (t *tokenTransport) CloseIdleConnections() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range []certConns{t.cur, t.prev} {
		if c.t != nil {
			c.t.CloseIdleConnections()
		}
	}
}

// certTransport is the API transport of a client with a certificate: the
// tuned transport, made anew when the certificate changes, so that
// requests after the change go over connections that present the new
// one (a token bound to it is refused over a connection that presents
// the one before). Clone makes another, with connections of its own, that
// follows the same certificate: renew reaches every clone in use, and so
// does the client's Close (closeAllIdle).
type certTransport struct {
	make func() *http.Transport
	cur  atomic.Pointer[http.Transport]
	// mu is held while cur is replaced; maxConns, if capped, is the
	// MaxConnsPerHost of every transport made.
	mu       sync.Mutex
	maxConns int
	capped   bool
	family   *certFamily
}

// certFamily is a client's certTransport and its clones, held weakly: a
// clone nobody holds any more (a proxy the agent removed) is collected,
// and dropped from the list at the next Clone. Whoever drops a clone
// closes its idle connections first (as the agent's proxies do): the
// client's Close reaches only the clones still held.
type certFamily struct {
	mu      sync.Mutex
	members []weak.Pointer[certTransport]
}

func newCertTransport(make func() *http.Transport) *certTransport {
	t := &certTransport{make: make, family: &certFamily{}}
	t.cur.Store(make())
	t.family.members = []weak.Pointer[certTransport]{weak.Make(t)}
	return t
}

func (t *certTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return t.cur.Load().RoundTrip(req)
}

// CloseIdleConnections closes the idle connections of the transport in
// use: its own, not those of its clones.
func (t *certTransport) CloseIdleConnections() { t.cur.Load().CloseIdleConnections() }

// Clone returns a transport like t, with connections of its own, that
// presents the same certificate and follows its renewals, with t's cap
// (SetMaxConnsPerHost). Closing the idle connections of one leaves the
// other's.
func (t *certTransport) Clone() http.RoundTripper {
	t.mu.Lock()
	c := &certTransport{make: t.make, maxConns: t.maxConns, capped: t.capped, family: t.family}
	t.mu.Unlock()
	c.cur.Store(c.made())
	f := t.family
	f.mu.Lock()
	defer f.mu.Unlock()
	f.members = slices.DeleteFunc(f.members, func(m weak.Pointer[certTransport]) bool { return m.Value() == nil })
	f.members = append(f.members, weak.Make(c))
	return c
}

// SetMaxConnsPerHost caps the connections per host at n
// (http.Transport.MaxConnsPerHost), on a transport made now and on those
// made when the certificate changes. It may be called while requests are
// in flight: they finish on the transport before, whose idle connections
// are closed.
func (t *certTransport) SetMaxConnsPerHost(n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.maxConns, t.capped = n, true
	t.replace()
}

// made is a new transport, capped as t says; t.mu is held, or t is new.
func (t *certTransport) made() *http.Transport {
	tr := t.make()
	if t.capped {
		tr.MaxConnsPerHost = t.maxConns
	}
	return tr
}

// replace starts a new transport for the requests to come, and closes the
// idle connections of the one before (those in use close when done);
// t.mu is held.
func (t *certTransport) replace() {
	old := t.cur.Swap(t.made())
	old.CloseIdleConnections()
}

// renew replaces the transport of t and of each of its clones in use
// (replace): none reuses a connection that presents the certificate
// before.
func (t *certTransport) renew() {
	for _, m := range t.family.live() {
		m.mu.Lock()
		m.replace()
		m.mu.Unlock()
	}
}

// closeAllIdle closes the idle connections of t and of its clones in use.
func (t *certTransport) closeAllIdle() {
	for _, m := range t.family.live() {
		m.CloseIdleConnections()
	}
}

// live returns the members still held.
func (f *certFamily) live() []*certTransport {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]*certTransport, 0, len(f.members))
	for _, m := range f.members {
		if v := m.Value(); v != nil {
			out = append(out, v)
		}
	}
	return out
}
