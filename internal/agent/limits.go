// The agent's limits against slow and numerous clients: a cap on the
// connections each listener serves at once, sized so that every listener
// together stays within the open-file limit (so a flood on loopback TCP
// never takes the descriptors the Unix socket needs), read deadlines on
// headers and bodies, and a bound on header size.

package agent

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/m2mtoken/m2mtoken"
)

const (
	// DefaultMaxConns is Config.MaxConns's default, and --max-conns's.
	DefaultMaxConns = 512
	// minConns is the least per-listener cap the agent starts with.
	minConns = 8
	// reservedFDs are kept out of the listeners' budget: the token
	// endpoint's own connections, cache and sink files, the standard
	// streams, the runtime's.
	reservedFDs = 64
	// headerTimeout bounds the time a client may take to send a request's
	// headers, and bodyGrace the wait for a body's first bytes (the
	// Agent's bodyGrace, which tests shorten).
	headerTimeout = 10 * time.Second
	bodyGrace     = 10 * time.Second
	// minBodyRate is the slowest a request body may arrive on average,
	// after bodyGrace: a body that stalls, or drips, is cut off.
	minBodyRate = 1 << 10 // bytes per second
	// maxHeaderBytes bounds a request's headers.
	maxHeaderBytes = 64 << 10
)

// LimitsHelp says the limits, for the command's --help.
const LimitsHelp = `Limits: each listener (--listen, --proxy) serves at most --max-conns
connections at once (lowered at start so that all of them fit the open-file
limit, ulimit -n, with room kept for the others: a flood on one TCP port
never stops a Unix socket); further connections wait to be accepted.
Request headers must arrive within 10 s, and a request body within 10 s
plus 1 s per KiB; a slower one is cut off.`

// connBudget returns the per-listener connection cap: maxConns, lowered
// so that listeners listeners and proxies proxies (each also holding as
// many upstream connections) fit within the open-file limit, less
// reservedFDs.
func connBudget(maxConns, listeners, proxies int) (int, error) {
	limit, ok := openFileLimit()
	if !ok || listeners+proxies == 0 {
		return maxConns, nil
	}
	per := (limit - reservedFDs) / (listeners + proxies)
	if per < minConns {
		return 0, fmt.Errorf("the open-file limit (ulimit -n) is %d: too low for %d listeners and %d proxies at %d connections each; raise it to at least %d",
			limit, listeners, proxies, minConns, reservedFDs+minConns*(listeners+proxies))
	}
	return min(maxConns, per), nil
}

// capUpstream holds the proxy to n connections to its upstream at once:
// requests beyond wait for one, so the proxy's descriptors stay within
// the budget connBudget made. It is called once per proxy, before its
// first request; a transport it cannot cap is warned of.
func (p *proxy) capUpstream(n int) {
	if t, ok := p.rt.(*m2mtoken.Transport); ok {
		switch base := t.Base.(type) {
		case *http.Transport:
			base.MaxConnsPerHost = n
			return
		case interface{ SetMaxConnsPerHost(int) }:
			base.SetMaxConnsPerHost(n)
			return
		}
	}
	p.log.Warn("the proxy's connections to its upstream cannot be capped: they may use descriptors beyond its share of the open-file limit (ulimit -n)",
		slog.String("source", p.spec.source), slog.String("upstream", p.spec.upstream.Redacted()), slog.Int("cap", n), slog.String("transport", transportName(p.rt)))
}

// transportName names the transport under rt, for a log.
func transportName(rt http.RoundTripper) string {
	if t, ok := rt.(*m2mtoken.Transport); ok {
		rt = t.Base
	}
	return fmt.Sprintf("%T", rt)
}

// limitListener accepts at most cap(sem) connections at once; further
// ones wait in the kernel's backlog until one closes.
type limitListener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func newLimitListener(ln net.Listener, n int) *limitListener {
	return &limitListener{Listener: ln, sem: make(chan struct{}, n), done: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

// Close closes the listener; then done is closed: once it is, no
// connection is accepted.
func (l *limitListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.done) })
	return err
}

// limitConn gives its slot back when closed.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// bodyDeadline cuts off a request body that does not arrive at
// minBodyRate after grace: the connection's read deadline starts at grace
// and moves on by 1 s per minBodyRate bytes read.
func bodyDeadline(next http.Handler, grace time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			rc := http.NewResponseController(w)
			start := time.Now()
			if rc.SetReadDeadline(start.Add(grace)) == nil {
				r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc, start: start, grace: grace}
			}
		}
		next.ServeHTTP(w, r)
	})
}

type deadlineBody struct {
	io.ReadCloser
	rc    *http.ResponseController
	start time.Time
	grace time.Duration
	read  int64
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		// The body is read: the deadline must not outlive it, or it fires
		// in net/http's background read after the body while the handler
		// still waits for a slow upstream, and cancels the request's
		// context. (After a stalled body, it stays: net/http's discard of
		// the rest must time out too.)
		b.rc.SetReadDeadline(time.Time{})
		return n, err
	}
	if n > 0 {
		b.read += int64(n)
		b.rc.SetReadDeadline(b.start.Add(b.grace + time.Duration(b.read)*time.Second/minBodyRate))
	}
	return n, err
}
