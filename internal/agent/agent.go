// Package agent is the m2mtoken agent: a long-running process that holds
// token sources with the library's refresh model and hands their tokens to
// the other processes on the host, in any language: over a local token
// endpoint (a Unix socket or loopback TCP), in files (sinks), and through
// an egress proxy that adds the token itself.
//
// The command (cmd/m2mtoken) turns its flags and config file into a
// [Config], sets up logging and signals, and calls [New] and [Agent.Run].
// Tests do the same in-process.
package agent

// This file has the Config and New; run.go the lifecycle (Run); server.go the
// endpoint, proxy.go the proxy, sink.go the files, watch.go what keeps each
// token warm, outage.go what a source's outage logs, limits.go the bounds
// on clients, socket_*.go the Unix socket's permissions, configfile.go the
// JSON config file.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/internal/clock"
)

// Config says what an agent holds and serves. Its zero value is not
// useful: give at least one Source and one Listener, Sink or Proxy.
//
// Listeners, Sinks and Proxies are written as the command's flags take
// them, and New's errors about them name those flags (--listen, --sink,
// --proxy, --group), in the user's words.
type Config struct {
	// Sources are the token sources, each with a unique name.
	Sources []Source
	// Listeners serve the token endpoint (GET /v1/token/NAME, /healthz,
	// /v1/stats).
	Listeners []Listener
	// Sinks are files that get each new token of a source.
	Sinks []Sink
	// Proxies forward requests to one upstream with a source's token.
	Proxies []Proxy
	// Group, a group name or ID, may use the Unix sockets (mode 0660) and
	// read the sinks (0640). Empty: the agent's user only (0600).
	Group string
	// MaxConns caps the connections each listener serves at once (lowered
	// to fit the open-file limit; see LimitsHelp). Zero means
	// DefaultMaxConns.
	MaxConns int
	// ShutdownTimeout is how long Run lets requests in flight finish once
	// its context is done. Zero means 10 seconds.
	ShutdownTimeout time.Duration
	// Logger gets the agent's log. Nil discards it.
	Logger *slog.Logger
	// Clock is the watchers' time (tests give a fake one). Nil is the wall
	// clock.
	Clock clock.Clock
}

// Source is one token source of the agent.
type Source struct {
	// Name is what clients ask for: /v1/token/NAME, --sink NAME=PATH.
	Name string
	// Origin says where the source was defined, in the user's words, such
	// as `config file agent.json: source "billing"`; New's errors about
	// the source start with it. Empty: source "NAME".
	Origin string
	// Config is the library's configuration of the source. Set its
	// FieldNames so that the library's errors name fields as the user
	// wrote them.
	Config m2mtoken.Config
	// Client, if not empty, names the source's client: sources with the
	// same Client share one m2mtoken.Pool (one connection pool, quota view
	// and error memory), and take only their Audience, Scopes and
	// Organization from their own Config. Empty: the source is a
	// TokenSource of its own.
	Client string
	// Warnings are logged when the agent is created, such as a key file
	// that other users may read.
	Warnings []string

	// pool tells the source's client apart: Client, and what the file
	// names outside itself (see fileSource.identity). Empty: Client.
	pool string
	// key is what the config file said of the source, and what it names
	// outside itself: a reload keeps the source if its key is the same.
	// Empty (a source not from the file): a reload replaces it.
	key string
}

// Listener is an address of the token endpoint: "unix:PATH", or a loopback
// "HOST:PORT" (port 0 picks a free one; see [Agent.Addrs]).
type Listener struct {
	Addr string
}

// Sink writes each new token of the source named Source to the file Path.
type Sink struct {
	Source, Path string
}

// ParseSink parses the command's NAME=PATH.
func ParseSink(v string) (Sink, error) {
	name, path, ok := strings.Cut(v, "=")
	if !ok || name == "" || path == "" {
		return Sink{}, fmt.Errorf("--sink %q: use NAME=PATH, such as default=/run/m2mtoken/token", v)
	}
	return Sink{Source: name, Path: path}, nil
}

// String returns s as the command's --sink takes it: NAME=PATH.
func (s Sink) String() string { return s.Source + "=" + s.Path }

// Proxy forwards the requests it receives on Listen ("unix:PATH" or a
// loopback "HOST:PORT") to the one Upstream URL, with a token of the
// source named Source.
type Proxy struct {
	Source, Listen, Upstream string
	// RequireHeader, for a proxy on TCP, refuses (403) every request
	// without "M2MToken-Agent: 1", as the token endpoint does: a request
	// forged through a server that fetches URLs for an attacker (SSRF)
	// cannot add it. The header is never forwarded. A proxy on a Unix
	// socket takes no such header: the socket's mode says who may
	// connect.
	RequireHeader bool
	// Origin says where the proxy was defined, in the user's words, such
	// as `config file agent.json: proxies[0]`; New's errors about it
	// start with it and name its fields. Empty: the --proxy flag.
	Origin string
}

// ParseProxy parses the command's NAME=LISTEN=UPSTREAM.
func ParseProxy(v string) (Proxy, error) {
	parts := strings.SplitN(v, "=", 3)
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return Proxy{}, fmt.Errorf("--proxy %q: use NAME=LISTEN=UPSTREAM, such as default=127.0.0.1:9000=https://api.example.com", v)
	}
	return Proxy{Source: parts[0], Listen: parts[1], Upstream: parts[2]}, nil
}

// String returns p as the command's --proxy takes it:
// NAME=LISTEN=UPSTREAM.
func (p Proxy) String() string { return p.Source + "=" + p.Listen + "=" + p.Upstream }

// A FlagError is a mistake in Config's Listeners, Sinks, Proxies or
// Group: the command reports it as a usage error (exit status 2).
type FlagError struct{ Err error }

// Error returns the mistake's message, which names the flag.
func (e *FlagError) Error() string { return e.Err.Error() }

// Unwrap returns the mistake.
func (e *FlagError) Unwrap() error { return e.Err }

func flagError(err error) error { return &FlagError{err} }

// agentSource is one source the agent holds.
type agentSource struct {
	name     string
	key      string // Source.key: what the config file said, for a reload
	cfg      m2mtoken.Config
	endpoint string // the Domain or TokenURL, as configured
	src      *m2mtoken.TokenSource
	h        *held // src, and who uses it
	w        *watcher
	sinks    []string
	warnings []string // Source.Warnings, logged when it is made
	outage   *outage
	stop     context.CancelFunc // stops the watcher, once Run started it
}

// Agent is a configured agent: its sources, listeners, sinks and proxies.
// Create it with New, and serve with Run, once.
type Agent struct {
	log             *slog.Logger
	cfg             Config // as New got it: a reload keeps its flags' part
	listens         []listenSpec
	gid             int                 // Group's ID, or -1
	sinks           map[string][]string // each source's sink paths
	shutdownTimeout time.Duration
	maxConns        int
	clk             clock.Clock
	bodyGrace       time.Duration // bodyGrace, but in tests
	started         time.Time

	// smu guards what requests read and a reload replaces. Nothing holds
	// it while calling the library, whose Observer reads bySrc.
	smu     sync.RWMutex
	sources []*agentSource
	byName  map[string]*agentSource
	bySrc   map[*m2mtoken.TokenSource][]*agentSource // for the Observer: sources of one request share a library source
	proxies []*proxySlot                             // in the order of Config.Proxies
	changed chan struct{}                            // closed when a reload replaces them

	// hmu guards the library sources and pools the agent holds.
	hmu   sync.Mutex
	helds map[*m2mtoken.TokenSource]*held
	pools map[string]*heldPool // by client: Source.pool, or Client

	// reloadMu serializes reloads, with each other and with Run's start
	// and stop; it guards the fields below.
	reloadMu sync.Mutex
	running  bool // Run listens, and has not begun to stop
	wctx     context.Context
	watchers sync.WaitGroup
	draining sync.WaitGroup // listeners a reload removed, shutting down
	errc     chan error     // the first listener that failed

	listening chan struct{} // closed when Run has opened its listeners, or failed to
	ready     chan struct{} // closed when every source holds a token
	mu        sync.Mutex
	endpoints []string // the token endpoint's addresses, once listening
	ran       atomic.Bool

	tokenServed, tokenFailed, refused atomic.Uint64
}

// New checks cfg and creates the agent's token sources. It opens no
// listener and makes no request; Run does. Its errors say what to fix,
// naming each source by its Origin; a mistake in the listeners, sinks,
// proxies or group is a *FlagError.
func New(cfg Config) (*Agent, error) {
	a := &Agent{log: cfg.Logger, cfg: cfg, byName: map[string]*agentSource{}, bySrc: map[*m2mtoken.TokenSource][]*agentSource{}, gid: -1, clk: cfg.Clock,
		helds: map[*m2mtoken.TokenSource]*held{}, pools: map[string]*heldPool{}, changed: make(chan struct{}), errc: make(chan error, 1),
		shutdownTimeout: cfg.ShutdownTimeout, maxConns: cfg.MaxConns, bodyGrace: bodyGrace,
		listening: make(chan struct{}), ready: make(chan struct{})}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.clk == nil {
		a.clk = clock.Real{}
	}
	if a.shutdownTimeout <= 0 {
		a.shutdownTimeout = 10 * time.Second
	}
	switch {
	case a.maxConns == 0:
		a.maxConns = DefaultMaxConns
	case a.maxConns < 0:
		return nil, flagError(fmt.Errorf("--max-conns %d: give a number of connections, 1 or more", cfg.MaxConns))
	}
	p, err := check(cfg, true)
	if err != nil {
		return nil, err
	}
	a.listens, a.gid, a.sinks = p.listens, p.gid, p.sinks
	for _, s := range p.sources {
		for _, w := range s.Warnings {
			a.log.Warn(w, slog.String("source", s.Name))
		}
	}
	next, order, err := a.build(p.sources, nil)
	if err != nil {
		return nil, err
	}
	slots, swaps := a.slots(p.proxies, next, nil)
	a.commit(order, slots, swaps)
	return a, nil
}

// plan is a checked Config: what New, and a reload, build.
type plan struct {
	listens []listenSpec
	gid     int
	sources []Source
	sinks   map[string][]string // by source
	proxies []proxySpec
}

// check makes every check of cfg that New makes before it creates a
// source (a reload makes them all again, but looking the group up, which
// lookup says), and returns what it parsed.
func check(cfg Config, lookup bool) (plan, error) {
	p := plan{gid: -1, sources: cfg.Sources, sinks: map[string][]string{}}
	if len(cfg.Listeners)+len(cfg.Sinks)+len(cfg.Proxies) == 0 {
		return p, flagError(errors.New("nothing to serve: give --listen unix:PATH (or 127.0.0.1:PORT), --sink NAME=PATH or --proxy NAME=LISTEN=UPSTREAM"))
	}
	if len(cfg.Sources) == 0 {
		return p, errors.New("no source: give the agent at least one token source")
	}
	hasUnix := false
	for _, l := range cfg.Listeners {
		ls, err := parseListen("--listen", l.Addr)
		if err != nil {
			return p, flagError(err)
		}
		hasUnix = hasUnix || ls.network == "unix"
		p.listens = append(p.listens, ls)
	}
	var sinkSpecs []sinkSpec
	for _, s := range cfg.Sinks {
		ss, err := checkSink(s)
		if err != nil {
			return p, flagError(err)
		}
		sinkSpecs = append(sinkSpecs, ss)
	}
	for _, pr := range cfg.Proxies {
		ps, err := checkProxy(pr)
		if err != nil && pr.Origin == "" {
			return p, flagError(err)
		}
		if err != nil {
			return p, err
		}
		hasUnix = hasUnix || ps.listen.network == "unix"
		p.proxies = append(p.proxies, ps)
	}
	if cfg.Group != "" {
		if !hasUnix && len(sinkSpecs) == 0 {
			return p, flagError(errors.New("--group is set but there is no Unix socket (--listen unix:PATH) or --sink to share"))
		}
		if lookup {
			gid, err := lookupGroup(cfg.Group)
			if err != nil {
				return p, flagError(err)
			}
			p.gid = gid
		}
	}
	byName := map[string]*Source{}
	for i := range cfg.Sources {
		s := &cfg.Sources[i]
		if s.Name == "" {
			return p, fmt.Errorf("source %d of %d has no name: give each source a Name", i+1, len(cfg.Sources))
		}
		if byName[s.Name] != nil {
			return p, fmt.Errorf("%s: the name is used by another source too: names must be unique", origin(*s))
		}
		byName[s.Name] = s
	}
	names := func() string { return strings.Join(sortedNames(cfg.Sources), ", ") }
	for _, s := range sinkSpecs {
		src := byName[s.source]
		if src == nil {
			return p, flagError(fmt.Errorf("--sink %s=%s: no source named %q; the agent has %s", s.source, s.path, s.source, names()))
		}
		if src.Config.DPoPKey != nil {
			return p, flagError(fmt.Errorf("--sink %s=%s: source %q binds its tokens to a DPoP key, and a program that reads a file cannot sign the proof each request needs: use --proxy %s=LISTEN=UPSTREAM, or the token endpoint with ?url=", s.source, s.path, s.source, s.source))
		}
		p.sinks[s.source] = append(p.sinks[s.source], s.path)
	}
	for _, ps := range p.proxies {
		if byName[ps.source] == nil {
			err := fmt.Errorf("%s: no source named %q; the agent has %s", ps.who, ps.source, names())
			if ps.origin == "" {
				err = flagError(err)
			}
			return p, err
		}
	}
	return p, sharedListeners(p.listens, p.proxies)
}

// sharedListeners refuses two listeners on one address (a port 0 picks a
// free one each time): the second would fail to listen at start, and a
// reload could not tell which proxy is which.
func sharedListeners(listens []listenSpec, proxies []proxySpec) error {
	who := map[listenSpec]string{}
	for _, l := range listens {
		if !l.anyPort() && who[l] != "" {
			return flagError(fmt.Errorf("--listen %s is given twice: give each listener its own address", l))
		}
		who[l] = "--listen " + l.String()
	}
	for _, ps := range proxies {
		l := ps.listen
		if prev := who[l]; prev != "" && !l.anyPort() {
			err := fmt.Errorf("%s: %s is where %s listens too: give each listener its own address", ps.who, l, prev)
			if ps.origin == "" {
				err = flagError(err)
			}
			return err
		}
		who[l] = ps.who
	}
	return nil
}

// origin names s for errors.
func origin(s Source) string {
	if s.Origin != "" {
		return s.Origin
	}
	return fmt.Sprintf("source %q", s.Name)
}

// build returns the agent's sources for specs: the source in cur of each
// spec the config file left as it was, and a new one (with its library
// source and watcher, not yet running) for each other. On an error it
// gives back what it made, and returns the error in the user's words.
func (a *Agent) build(specs []Source, cur map[string]*agentSource) (map[string]*agentSource, []*agentSource, error) {
	next := make(map[string]*agentSource, len(specs))
	order := make([]*agentSource, 0, len(specs))
	for _, spec := range specs {
		if old := cur[spec.Name]; old != nil && old.key != "" && old.key == spec.key {
			next[spec.Name] = old
			order = append(order, old)
			continue
		}
		h, err := a.hold(spec)
		if err != nil {
			for _, s := range order {
				if cur[s.name] != s {
					s.h.unuse(a)
				}
			}
			return nil, nil, err
		}
		s := &agentSource{name: spec.Name, key: spec.key, cfg: spec.Config, endpoint: spec.Config.TokenURL, src: h.src, h: h,
			sinks: a.sinks[spec.Name], warnings: spec.Warnings, outage: newOutage(spec.Name, a.clk, a.log)}
		if spec.Config.Domain != "" {
			s.endpoint = spec.Config.Domain
		}
		sinks, name, gid, log := s.sinks, s.name, a.gid, a.log
		s.w = newWatcher(s.name, s.src, a.clk, a.log, s.outage, func(tok *oauth2.Token) error {
			if err := writeSinks(sinks, tok, gid); err != nil {
				log.Error("writing the token to a sink failed; trying again", slog.String("source", name), slog.Any("error", err))
				return err
			}
			return nil
		})
		next[spec.Name] = s
		order = append(order, s)
	}
	return next, order, nil
}

// commit makes sources and the proxies' slots the agent's, each slot
// serving its proxy of swaps if there is one: what requests find from now
// on. It calls nothing that takes the lock.
func (a *Agent) commit(sources []*agentSource, proxies []*proxySlot, swaps []*proxy) {
	a.smu.Lock()
	defer a.smu.Unlock()
	a.sources = sources
	a.byName = make(map[string]*agentSource, len(sources))
	a.bySrc = make(map[*m2mtoken.TokenSource][]*agentSource, len(sources))
	for _, s := range sources {
		a.byName[s.name] = s
		a.bySrc[s.src] = append(a.bySrc[s.src], s)
	}
	for i, sl := range proxies {
		if swaps[i] != nil {
			sl.cur = swaps[i]
		}
	}
	a.proxies = proxies
	close(a.changed)
	a.changed = make(chan struct{})
}

// sourcesOf returns the agent's sources of a library source (several
// sources of one request share it), or none (a source a reload removed).
func (a *Agent) sourcesOf(src *m2mtoken.TokenSource) []*agentSource {
	a.smu.RLock()
	defer a.smu.RUnlock()
	return a.bySrc[src]
}

// acquire returns the source named name, with a request counted in
// flight through it until the caller calls s.h.release; nil if there is
// none.
func (a *Agent) acquire(name string) *agentSource {
	a.smu.RLock()
	s := a.byName[name]
	if s != nil {
		s.h.acquire()
	}
	a.smu.RUnlock()
	return s
}

// current returns the agent's sources and proxies now, as requests find
// them.
func (a *Agent) current() ([]*agentSource, []*proxy) {
	a.smu.RLock()
	defer a.smu.RUnlock()
	proxies := make([]*proxy, len(a.proxies))
	for i, sl := range a.proxies {
		proxies[i] = sl.cur
	}
	return a.sources, proxies
}

// listeners returns the proxies' listeners now.
func (a *Agent) listeners() []*proxySlot {
	a.smu.RLock()
	defer a.smu.RUnlock()
	return a.proxies
}

// Handler returns the token endpoint's handler (GET /v1/token/NAME,
// /healthz, /v1/stats) as a Unix socket serves it: without the guards of
// loopback TCP. It answers from the sources' memory; a source's token is
// fetched on the first request if Run has not fetched it yet.
func (a *Agent) Handler() http.Handler { return a.endpoint() }

// Listening returns a channel that is closed once Run has opened every
// listener, or failed to.
func (a *Agent) Listening() <-chan struct{} { return a.listening }

// Ready returns a channel that is closed once every source holds a token
// (and has written it to its sinks).
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Addrs returns the addresses the agent listens on, once Listening is
// closed: the token endpoint's, in the order of Config.Listeners, then the
// proxies', in the order of Config.Proxies (after a reload, the file's
// in its order, then the --proxy ones); "unix:PATH" or "HOST:PORT", with
// the port a listener at port 0 got.
func (a *Agent) Addrs() (endpoint, proxies []string) {
	a.mu.Lock()
	endpoint = append(endpoint, a.endpoints...)
	a.mu.Unlock()
	for _, sl := range a.listeners() {
		if addr := sl.address(); addr != "" {
			proxies = append(proxies, addr)
		}
	}
	return endpoint, proxies
}
