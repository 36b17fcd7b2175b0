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
	// Organization from their own Config.
	Client string
	// Warnings are logged when the agent is created, such as a key file
	// that other users may read.
	Warnings []string
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
	cfg      m2mtoken.Config
	endpoint string // the Domain or TokenURL, as configured
	src      *m2mtoken.TokenSource
	w        *watcher
	sinks    []string
	outage   *outage
}

// Agent is a configured agent: its sources, listeners, sinks and proxies.
// Create it with New, and serve with Run, once.
type Agent struct {
	log             *slog.Logger
	sources         []*agentSource
	byName          map[string]*agentSource
	bySrc           map[*m2mtoken.TokenSource]*agentSource // for the Observer
	pools           []*m2mtoken.Pool                       // of the sources that share a client
	listens         []listenSpec
	gid             int // Group's ID, or -1
	proxies         []*proxy
	shutdownTimeout time.Duration
	maxConns        int
	clk             clock.Clock
	bodyGrace       time.Duration // bodyGrace, but in tests
	started         time.Time

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
	a := &Agent{log: cfg.Logger, byName: map[string]*agentSource{}, bySrc: map[*m2mtoken.TokenSource]*agentSource{}, gid: -1, clk: cfg.Clock,
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
	if len(cfg.Listeners)+len(cfg.Sinks)+len(cfg.Proxies) == 0 {
		return nil, flagError(errors.New("nothing to serve: give --listen unix:PATH (or 127.0.0.1:PORT), --sink NAME=PATH or --proxy NAME=LISTEN=UPSTREAM"))
	}
	if len(cfg.Sources) == 0 {
		return nil, errors.New("no source: give the agent at least one token source")
	}
	hasUnix := false
	for _, l := range cfg.Listeners {
		ls, err := parseListen("--listen", l.Addr)
		if err != nil {
			return nil, flagError(err)
		}
		hasUnix = hasUnix || ls.network == "unix"
		a.listens = append(a.listens, ls)
	}
	var sinkSpecs []sinkSpec
	for _, s := range cfg.Sinks {
		ss, err := checkSink(s)
		if err != nil {
			return nil, flagError(err)
		}
		sinkSpecs = append(sinkSpecs, ss)
	}
	var proxySpecs []proxySpec
	for _, p := range cfg.Proxies {
		ps, err := checkProxy(p)
		if err != nil && p.Origin == "" {
			return nil, flagError(err)
		}
		if err != nil {
			return nil, err
		}
		hasUnix = hasUnix || ps.listen.network == "unix"
		proxySpecs = append(proxySpecs, ps)
	}
	if cfg.Group != "" {
		if !hasUnix && len(sinkSpecs) == 0 {
			return nil, flagError(errors.New("--group is set but there is no Unix socket (--listen unix:PATH) or --sink to share"))
		}
		gid, err := lookupGroup(cfg.Group)
		if err != nil {
			return nil, flagError(err)
		}
		a.gid = gid
	}
	for i, s := range cfg.Sources {
		if s.Name == "" {
			return nil, fmt.Errorf("source %d of %d has no name: give each source a Name", i+1, len(cfg.Sources))
		}
		if a.byName[s.Name] != nil {
			return nil, fmt.Errorf("%s: the name is used by another source too: names must be unique", origin(s))
		}
		a.byName[s.Name] = &agentSource{name: s.Name, cfg: s.Config, outage: newOutage(s.Name, a.clk, a.log)}
		a.sources = append(a.sources, a.byName[s.Name])
		for _, w := range s.Warnings {
			a.log.Warn(w, slog.String("source", s.Name))
		}
	}
	for _, s := range sinkSpecs {
		src := a.byName[s.source]
		if src == nil {
			return nil, flagError(fmt.Errorf("--sink %s=%s: no source named %q; the agent has %s", s.source, s.path, s.source, strings.Join(a.names(), ", ")))
		}
		if src.cfg.DPoPKey != nil {
			return nil, flagError(fmt.Errorf("--sink %s=%s: source %q binds its tokens to a DPoP key, and a program that reads a file cannot sign the proof each request needs: use --proxy %s=LISTEN=UPSTREAM, or the token endpoint with ?url=", s.source, s.path, s.source, s.source))
		}
		src.sinks = append(src.sinks, s.path)
	}
	for _, p := range proxySpecs {
		if a.byName[p.source] == nil {
			err := fmt.Errorf("%s: no source named %q; the agent has %s", p.who, p.source, strings.Join(a.names(), ", "))
			if p.origin == "" {
				err = flagError(err)
			}
			return nil, err
		}
	}
	if err := a.newSources(cfg.Sources); err != nil {
		return nil, err
	}
	for _, p := range proxySpecs {
		a.proxies = append(a.proxies, newProxy(p, a.byName[p.source], a.log))
	}
	for _, s := range a.sources {
		sinks, name, gid, log := s.sinks, s.name, a.gid, a.log
		s.w = newWatcher(s.name, s.src, a.clk, a.log, s.outage, func(tok *oauth2.Token) error {
			if err := writeSinks(sinks, tok, gid); err != nil {
				log.Error("writing the token to a sink failed; trying again", slog.String("source", name), slog.Any("error", err))
				return err
			}
			return nil
		})
	}
	return a, nil
}

// origin names s for errors.
func origin(s Source) string {
	if s.Origin != "" {
		return s.Origin
	}
	return fmt.Sprintf("source %q", s.Name)
}

// newSources creates the library's token sources. Sources of one client
// (the config file's sources that differ only in name, audience, scopes
// and organization) share one pool: one connection pool, quota view and
// error memory for the client.
func (a *Agent) newSources(specs []Source) error {
	clients := map[string][]string{}
	for _, spec := range specs {
		if spec.Client != "" {
			clients[spec.Client] = append(clients[spec.Client], spec.Name)
		}
	}
	pools := map[string]*m2mtoken.Pool{}
	for i, spec := range specs {
		s := a.sources[i]
		s.endpoint = spec.Config.TokenURL
		if spec.Config.Domain != "" {
			s.endpoint = spec.Config.Domain
		}
		cfg := spec.Config
		cfg.Logger = a.log.With(slog.String("source", spec.Name))
		cfg.Observer = observe(cfg.Observer, a.sourceOf)
		var src *m2mtoken.TokenSource
		var err error
		if names := clients[spec.Client]; len(names) > 1 {
			p := pools[spec.Client]
			if p == nil {
				cfg.Logger = a.log.With(slog.String("sources", strings.Join(names, ",")))
				// The pool's requests are the config file's, made here
				// once, never a caller's: the bound on new tokens, which
				// would refuse the first fetches of a file with many
				// sources, has nothing to guard against.
				cfg.NewTokenRate = -1
				if p, err = m2mtoken.NewPool(cfg); err == nil {
					pools[spec.Client] = p
					a.pools = append(a.pools, p)
				}
			}
			if err == nil {
				src, err = p.Source(m2mtoken.TokenRequest{Audience: spec.Config.Audience, Scopes: spec.Config.Scopes, Organization: spec.Config.Organization})
			}
		} else {
			src, err = m2mtoken.New(cfg)
		}
		if err != nil {
			a.closeSources()
			// The Config's FieldNames name the fields in the user's words.
			return fmt.Errorf("%s: %s", origin(spec), strings.TrimPrefix(err.Error(), "m2mtoken: "))
		}
		s.src = src
		a.bySrc[src] = s
	}
	return nil
}

// sourceOf returns the agent's source of a library source, or nil. The
// map is complete before Run starts any fetch, and not written after.
func (a *Agent) sourceOf(src *m2mtoken.TokenSource) *agentSource { return a.bySrc[src] }

func (a *Agent) closeSources() {
	for _, s := range a.sources {
		if s.src != nil {
			s.src.Close()
		}
	}
	for _, p := range a.pools {
		p.Close()
	}
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
// proxies', in the order of Config.Proxies; "unix:PATH" or "HOST:PORT",
// with the port a listener at port 0 got.
func (a *Agent) Addrs() (endpoint, proxies []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	endpoint = append(endpoint, a.endpoints...)
	for _, p := range a.proxies {
		if p.addr != "" {
			proxies = append(proxies, p.addr)
		}
	}
	return endpoint, proxies
}
