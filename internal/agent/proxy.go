// The agent's egress proxy: --proxy NAME=LISTEN=UPSTREAM forwards every
// request it receives on LISTEN to the one UPSTREAM, with a token of
// source NAME added by the library's Transport (401 recovery included).
// It is a reverse proxy for one origin, never an open proxy: the request's
// own scheme and host are ignored.

package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/internal/suggest"
)

// proxySpec is one --proxy, or one proxy of the config file.
type proxySpec struct {
	source        string
	listen        listenSpec
	upstream      *url.URL
	requireHeader bool
	origin        string // Proxy.Origin
	who           string // the proxy in the user's words, for errors
	listenName    string // its listen address in the user's words
}

// checkProxy checks p and parses its addresses. Its errors name p as
// --proxy NAME=LISTEN=UPSTREAM, or by its Origin and fields.
func checkProxy(p Proxy) (proxySpec, error) {
	who, listenName, upstreamName := fmt.Sprintf("--proxy %q", p.String()), "--proxy "+p.Source+"=LISTEN", "UPSTREAM"
	if p.Origin != "" {
		who, listenName, upstreamName = p.Origin, p.Origin+`: "listen"`, `"upstream"`
	} else if p.Source == "" || p.Listen == "" || p.Upstream == "" {
		_, err := ParseProxy(p.String()) // its error says what is missing
		return proxySpec{}, err
	}
	l, err := parseListen(listenName, p.Listen)
	if err != nil {
		return proxySpec{}, err
	}
	u, err := url.Parse(p.Upstream)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https"):
		return proxySpec{}, fmt.Errorf("%s: %s %q must be an absolute http or https URL, such as https://api.example.com", who, upstreamName, p.Upstream)
	case strings.HasSuffix(u.Host, ":"):
		return proxySpec{}, fmt.Errorf("%s: %s %q has an empty port: give the port after the colon, or drop the colon for the scheme's default", who, upstreamName, p.Upstream)
	case u.Scheme == "http" && !isLoopbackHost(u.Hostname()) && suggest.Nearest(u.Hostname(), []string{"localhost"}) != "":
		return proxySpec{}, fmt.Errorf("%s: %s %q: %q is not a loopback name: did you mean localhost?", who, upstreamName, p.Upstream, u.Hostname())
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return proxySpec{}, fmt.Errorf("%s: %s %q may have a path but no credentials, query or fragment", who, upstreamName, p.Upstream)
	case u.Scheme == "http" && !isLoopbackHost(u.Hostname()):
		return proxySpec{}, fmt.Errorf("%s: %s %q uses plain http to another host: the token would travel unencrypted; use https", who, upstreamName, p.Upstream)
	case p.RequireHeader && l.network == "unix":
		return proxySpec{}, fmt.Errorf("%s: the required header %q is for a proxy on TCP: on a Unix socket, the socket's mode (0600, or 0660 with --group) says who may connect", who, agentHeader+": 1")
	}
	return proxySpec{source: p.Source, listen: l, upstream: u, requireHeader: p.RequireHeader, origin: p.Origin, who: who, listenName: listenName}, nil
}

// isLoopbackHost reports whether h (without brackets or port) is
// localhost, in any case, or a loopback IP address.
func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// proxy is a running --proxy, or a proxy of the config file.
type proxy struct {
	spec    proxySpec
	src     *agentSource
	slot    *proxySlot // its listener and counters
	handler http.Handler
	served  http.Handler // handler, behind the guards of TCP
	rt      http.RoundTripper
	log     *slog.Logger
	// inflight counts the requests going through it; retired is set once a
	// reload swapped it out, after which only inflight goes down (see
	// retire).
	inflight atomic.Int64
	retired  atomic.Bool
}

// proxySlot is a proxy's listener and the proxy it serves: a reload that
// changes a proxy's upstream or source swaps the proxy in its slot and
// keeps the listener and its connections. The counters are the
// listener's.
type proxySlot struct {
	key      string // see proxyKeys
	srv      *server
	addr     atomic.Pointer[string] // the address it listens on, once it does
	cur      *proxy                 // what its requests go through; Agent.smu guards it
	requests atomic.Uint64
	errors   atomic.Uint64
}

// address returns the address sl listens on, or "" before it does.
func (sl *proxySlot) address() string {
	if p := sl.addr.Load(); p != nil {
		return *p
	}
	return ""
}

// same reports whether p forwards as q does (from the same listener).
func (p proxySpec) same(q proxySpec) bool {
	return p.source == q.source && p.upstream.String() == q.upstream.String() && p.requireHeader == q.requireHeader
}

// proxyKeys returns what a reload knows each proxy's listener by: a
// proxy of the config file by its address (and, on port 0, which of the
// file's proxies on port 0 it is); a --proxy by its place among them,
// which no reload changes.
func proxyKeys(specs []proxySpec) []string {
	keys := make([]string, len(specs))
	seen := map[string]int{}
	for i, ps := range specs {
		if ps.origin == "" {
			keys[i] = fmt.Sprintf("--proxy %d", i)
			continue
		}
		l := ps.listen.String()
		keys[i] = fmt.Sprintf("%s #%d", l, seen[l])
		seen[l]++
	}
	return keys
}

// slots returns the listeners of the proxies specs, whose sources are
// next's: the slot in cur with the same key, or a new slot, not yet
// listening; and, for each, the new proxy that commit swaps in (nil if
// the slot keeps its proxy: same upstream, header and source).
func (a *Agent) slots(specs []proxySpec, next map[string]*agentSource, cur []*proxySlot) ([]*proxySlot, []*proxy) {
	byKey := make(map[string]*proxySlot, len(cur))
	for _, sl := range cur {
		byKey[sl.key] = sl
	}
	slots, swaps := make([]*proxySlot, len(specs)), make([]*proxy, len(specs))
	for i, k := range proxyKeys(specs) {
		ps, sl := specs[i], byKey[k]
		if sl == nil {
			sl = &proxySlot{key: k}
		}
		if src := next[ps.source]; sl.cur == nil || sl.cur.src != src || !sl.cur.spec.same(ps) {
			swaps[i] = a.newProxy(ps, src, sl)
		}
		slots[i] = sl
	}
	return slots, swaps
}

// newProxy is the proxy of spec through src, on sl's listener.
func (a *Agent) newProxy(spec proxySpec, src *agentSource, sl *proxySlot) *proxy {
	p := newProxy(spec, src, sl, a.log)
	p.served = p.handler
	if spec.listen.network == "tcp" {
		p.served = a.guard(spec.requireHeader, p.handler)
	}
	return p
}

// serveProxy serves sl's requests through its proxy of the moment, each
// counted in flight through the proxy's source until it ends: a reload
// that swaps the proxy lets it finish with the one it began with.
func (a *Agent) serveProxy(sl *proxySlot) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.smu.RLock()
		p := sl.cur
		p.src.h.acquire()
		p.inflight.Add(1)
		a.smu.RUnlock()
		defer p.src.h.release(a)
		defer p.done()
		p.served.ServeHTTP(w, r)
	})
}

// retire is told that a reload swapped p out of its slot: once its last
// request ends, its idle upstream connections are closed. Closing them
// also has the transport close the connections that go idle after (until
// a new request, which a retired proxy does not get), so a request that
// was still under way leaves no connection behind.
func (p *proxy) retire() {
	p.retired.Store(true)
	if p.inflight.Load() == 0 {
		p.closeIdle()
	}
}

// done ends a request through p.
func (p *proxy) done() {
	if p.inflight.Add(-1) == 0 && p.retired.Load() {
		p.closeIdle()
	}
}

// maxReplayBody is the largest request body the proxy keeps in memory so
// that the Transport can send it again after a 401 for a revoked token.
// Larger bodies, and bodies of unknown length, stream through; a 401 for
// them reaches the client.
const maxReplayBody = 64 << 10

// proxyHeaders are removed from every request: the proxy sets the
// credentials, and its own header means nothing upstream.
var proxyHeaders = []string{"Authorization", "Proxy-Authorization", "DPoP", agentHeader}

func newProxy(spec proxySpec, src *agentSource, sl *proxySlot, log *slog.Logger) *proxy {
	// The source's own client transport: it adds the token, recovers from
	// a revoked one, keeps many idle connections to the one upstream, and
	// trusts the source's CA (ca_file, --ca-file, M2MTOKEN_CA_FILE) besides
	// the system's, as its token requests do. Its connections are the
	// proxy's own (a copy of the client's, or of its certificate transport
	// with client_cert_file, which follows the certificate's renewals):
	// their cap (capUpstream) is set before any request, even when a
	// reload adds a proxy to a client whose other proxies are serving, and
	// a proxy that a reload removes closes its idle connections without
	// touching theirs.
	rt := src.src.Client().Transport
	if t, ok := rt.(*m2mtoken.Transport); ok {
		var own http.RoundTripper
		switch base := t.Base.(type) {
		case *http.Transport:
			own = base.Clone()
		case interface{ Clone() http.RoundTripper }:
			own = base.Clone()
		}
		if own != nil {
			rt = &m2mtoken.Transport{Source: t.Source, Base: own}
		}
	}
	p := &proxy{spec: spec, src: src, slot: sl, rt: rt, log: log}
	target := spec.upstream
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target) // the one upstream, whatever the request named
			for _, h := range proxyHeaders {
				pr.Out.Header.Del(h)
			}
		},
		Transport:     p.rt,
		FlushInterval: -1, // stream responses as they come
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return // the client went away
			}
			p.slot.errors.Add(1)
			code, what := http.StatusBadGateway, "upstream "+target.Redacted()+" failed"
			var te *m2mtoken.TokenError
			var we *m2mtoken.WaitError
			var qe *m2mtoken.QuotaError
			if errors.As(err, &te) || errors.As(err, &we) || errors.As(err, &qe) || errors.Is(err, m2mtoken.ErrClosed) {
				// No token: counted in the source's outage, which the log
				// summarizes, rather than a line per request.
				code, what = http.StatusServiceUnavailable, fmt.Sprintf("no token for source %q", spec.source)
				src.outage.refusedRequest(err)
			} else {
				log.Warn("proxy request failed", slog.String("source", spec.source), slog.String("upstream", target.Redacted()),
					slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("error", err))
			}
			// The answer says what failed, never why: the reason may be the
			// token endpoint's own text, and a proxy's caller needs no
			// credential to see it. The agent's log has it.
			http.Error(w, "m2mtoken agent: "+what+" (the agent's log says why)", code)
		},
	}
	p.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.slot.requests.Add(1)
		if r.Method == http.MethodConnect {
			p.slot.errors.Add(1)
			http.Error(w, "m2mtoken agent: CONNECT is refused: this proxy forwards to "+target.Redacted()+" only", http.StatusMethodNotAllowed)
			return
		}
		if hasDotSegment(r) {
			p.slot.errors.Add(1)
			http.Error(w, "m2mtoken agent: the path has a dot-segment (. or .., maybe percent-encoded, with ;parameters or in look-alike characters) or a NUL byte: this proxy forwards only paths under "+target.Redacted(), http.StatusBadRequest)
			return
		}
		if r.ContentLength > 0 && r.ContentLength <= maxReplayBody {
			b, err := io.ReadAll(io.LimitReader(r.Body, maxReplayBody+1))
			r.Body.Close()
			if err != nil {
				p.slot.errors.Add(1)
				http.Error(w, "m2mtoken agent: reading the request body: "+err.Error(), http.StatusBadRequest)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(b))
			r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
		}
		rp.ServeHTTP(w, r)
	})
	return p
}

// closeIdle drops the proxy's idle upstream connections.
func (p *proxy) closeIdle() {
	if c, ok := p.rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
