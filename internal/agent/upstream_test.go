// A proxy's connections to its upstream with a client certificate
// (client_cert_file): its own, held to its cap across the certificate's
// renewal, closed without touching another proxy's.

package agent

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/internal/follow/followtest"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// certUpstream is an API that requires a client certificate, and tells
// which certificate and which connection each request came with.
type certUpstream struct {
	*httptest.Server
	conns atomic.Int64 // connections made to it
	// held receives a request to /hold once it arrives, and it waits for
	// release.
	held, release chan struct{}
	mu            sync.Mutex
	seen          map[string]string // X-Request -> "certificate thumbprint remote address"
}

func newCertUpstream(t *testing.T) *certUpstream {
	u := &certUpstream{held: make(chan struct{}, 1), release: make(chan struct{}), seen: map[string]string{}}
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sum := sha256.Sum256(r.TLS.PeerCertificates[0].Raw)
		u.mu.Lock()
		u.seen[r.Header.Get("X-Request")] = base64.RawURLEncoding.EncodeToString(sum[:]) + " " + r.RemoteAddr
		u.mu.Unlock()
		if r.URL.Path == "/hold" {
			u.held <- struct{}{}
			<-u.release
		}
		io.WriteString(w, "ok")
	}))
	u.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	u.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			u.conns.Add(1)
		}
	}
	u.StartTLS()
	t.Cleanup(u.Close)
	return u
}

// request is what the upstream saw of request id: the certificate's
// thumbprint and the client's address (its connection).
func (u *certUpstream) request(id string) (thumb, conn string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	thumb, conn, _ = strings.Cut(u.seen[id], " ")
	return thumb, conn
}

// TestProxyUpstreamWithClientCertificate: two proxies of a source with a
// client certificate have upstream transports of their own, and of the
// source's Client(); capUpstream holds a proxy to its cap (a request
// beyond waits for the connection in use, rather than making another),
// and still after the certificate is renewed, when the proxies make new
// connections that present the new certificate; and closing the idle
// connections of one proxy (as a reload that removes it does) leaves the
// other's. The source's Close closes the proxies' idle connections too.
func TestProxyUpstreamWithClientCertificate(t *testing.T) {
	ca := m2mtest.NewCA("proxy upstream CA")
	certPEM := func() (string, string, string) {
		cert, err := ca.Issue(&x509.Certificate{Subject: pkix.Name{CommonName: "svc"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		c, k, err := m2mtest.CertificatePEM(cert)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(cert.Certificate[0])
		return string(c), string(k), base64.RawURLEncoding.EncodeToString(sum[:])
	}
	c1, k1, thumb1 := certPEM()
	c2, k2, thumb2 := certPEM()
	dir := t.TempDir()
	cf, kf, caFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.pem")
	followtest.Write(t, cf, c1)
	followtest.Write(t, kf, k1)
	iss := issuer(t)
	up := newCertUpstream(t)
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	before := goleak.IgnoreCurrent()
	src, err := m2mtoken.New(m2mtoken.Config{TokenURL: iss.TokenURL(), ClientID: "cli", ClientSecret: secret, Audience: aud,
		ClientCertFile: cf, ClientKeyFile: kf, CAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	upstream, err := url.Parse(up.URL)
	if err != nil {
		t.Fatal(err)
	}
	as := &agentSource{name: "api", src: src}
	spec := proxySpec{source: "api", upstream: upstream}
	p1 := newProxy(spec, as, &proxySlot{}, discardLog())
	p2 := newProxy(spec, as, &proxySlot{}, discardLog())
	p1.capUpstream(1)
	p2.capUpstream(1)
	base1, base2 := p1.rt.(*m2mtoken.Transport).Base, p2.rt.(*m2mtoken.Transport).Base
	if base1 == base2 || base1 == src.Client().Transport.(*m2mtoken.Transport).Base {
		t.Fatalf("two proxies of the source share one upstream transport (%T)", base1)
	}

	var n atomic.Int64
	// send sends a request through p to path, traced by trace, and
	// returns its X-Request, by which the upstream knows it.
	send := func(p *proxy, path string, trace *httptrace.ClientTrace) string {
		id := strconv.FormatInt(n.Add(1), 10)
		r := httptest.NewRequest("GET", "http://proxy"+path, nil)
		r.Header.Set("X-Request", id)
		r = r.WithContext(httptrace.WithClientTrace(r.Context(), trace))
		w := httptest.NewRecorder()
		p.handler.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			t.Errorf("%s through the proxy: %d %s", path, w.Code, w.Body)
		}
		return id
	}
	// call sends a request through p and reports whether its upstream
	// connection was reused.
	call := func(p *proxy, path string) (id string, reused bool) {
		id = send(p, path, &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) { reused = ci.Reused }})
		return id, reused
	}
	// capped checks that p holds to one connection: a request sent while
	// another is in flight waits for its connection.
	capped := func(p *proxy, when string) {
		var held string
		done := make(chan struct{})
		go func() {
			defer close(done)
			held = send(p, "/hold", &httptrace.ClientTrace{})
		}()
		<-up.held
		// The second request asks for a connection while the first holds
		// the only one; then the first ends. Without a cap the second
		// would have dialled a connection of its own at once.
		waiting, second := make(chan struct{}), make(chan string)
		go func() {
			second <- send(p, "/", &httptrace.ClientTrace{GetConn: func(string) { close(waiting) }})
		}()
		<-waiting
		up.release <- struct{}{}
		<-done
		id := <-second
		_, c1 := up.request(held)
		_, c2 := up.request(id)
		if c1 != c2 {
			t.Errorf("%s, a request sent while another was in flight made a connection of its own (%s, %s): the proxy's cap of 1 does not hold", when, c1, c2)
		}
	}

	call(p1, "/")
	call(p2, "/")
	p1.closeIdle()
	if _, reused := call(p2, "/"); !reused {
		t.Error("closing the idle connections of one proxy closed another's")
	}
	if _, reused := call(p1, "/"); reused {
		t.Error("the proxy reused a connection after closing its idle ones")
	}
	capped(p1, "before the renewal")

	followtest.RenameOver(t, cf, c2)
	followtest.RenameOver(t, kf, k2)
	// A token request reads the certificate's files: the renewal is taken.
	tok, err := src.Token()
	if err != nil {
		t.Fatal(err)
	}
	src.Invalidate(tok)
	if _, err := src.Token(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*proxy{p1, p2} {
		id, reused := call(p, "/")
		if got, _ := up.request(id); reused || got != thumb2 {
			t.Errorf("after the renewal a proxy reused a connection (%v) or presented the certificate before (%v), want a new connection that presents the new one", reused, got == thumb1)
		}
	}
	capped(p1, "after the renewal")
	capped(p2, "after the renewal")
	// One each before the renewal, one more for p1 after its closeIdle, one
	// each after: none beside a connection in use.
	if got := up.conns.Load(); got != 5 {
		t.Errorf("%d upstream connections, want 5", got)
	}

	src.Close()
	goleak.VerifyNone(t, before)
	_, _ = p1.rt, p2.rt // the proxies are held until here, as the agent holds its own
}

// TestCapUpstreamWarnsWhenItCannot: a proxy whose upstream transport has
// no cap to set says so, naming the transport, rather than running
// uncapped in silence.
func TestCapUpstreamWarnsWhenItCannot(t *testing.T) {
	var log strings.Builder
	upstream, _ := url.Parse("https://api.example.com/")
	p := &proxy{spec: proxySpec{source: "api", upstream: upstream}, log: slog.New(slog.NewTextHandler(&log, nil)),
		rt: &m2mtoken.Transport{Base: roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, io.EOF })}}
	p.capUpstream(8)
	if got := log.String(); !strings.Contains(got, "level=WARN") || !strings.Contains(got, "cannot be capped") || !strings.Contains(got, "transport=agent.roundTripFunc") {
		t.Errorf("capUpstream on a transport it cannot cap logged %q, want a warning naming it", got)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
