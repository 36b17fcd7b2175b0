// m2mtoken agent: a long-running process that holds token sources with the
// library's refresh model and hands their tokens to the other processes on
// the host, in any language: over a local token endpoint (a Unix socket or
// loopback TCP), in files, and through an egress proxy that adds the token
// itself. This file has the command, its flags and its lifecycle. It stays
// one file (about 470 lines) because the flags, their checks and the run
// they set up read top to bottom; it shrinks to the flags when the agent
// itself moves to a package of its own.

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/oauth2"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/internal/clock"
)

const agentSynopsis = `Holds one or more token sources and hands their tokens to local processes,
in any language, refreshing them in the background before they expire:

  --listen unix:PATH | 127.0.0.1:PORT   GET /v1/token/NAME answers
      {"access_token","token_type","expires_in"} from memory; /healthz is 200
      once every source holds a token; /v1/stats has each source's counters.
      Over TCP every request must carry the header "M2MToken-Agent: 1".
  --sink NAME=PATH                      writes each new token of NAME to PATH
      (mode 0600, replaced atomically). It stays when the agent stops: its
      token is valid until it expires, so readers ride out a restart.
  --proxy NAME=LISTEN=UPSTREAM          forwards requests on LISTEN to
      UPSTREAM only, with a token of NAME in the Authorization header.

One source, "default", comes from the same flags and environment as
'm2mtoken token'; or several from a JSON file (--config):

  {"sources": [{"name": "billing", "domain": "tenant.eu.auth0.com",
    "client_id": "...", "client_secret_env": "BILLING_SECRET",
    "audience": "https://billing.example.com/", "scopes": ["read:invoices"]}]}

` + limitsHelp + `

Stops cleanly on SIGTERM or SIGINT.`

// multiFlag is a flag that can be given more than once.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// usageError is a bad command line: its message is printed and the exit
// status is 2.
type usageError struct{ error }

// agentSource is one source the agent holds.
type agentSource struct {
	name     string
	cfg      m2mtoken.Config
	endpoint string // the Domain or TokenURL, as configured
	src      *m2mtoken.TokenSource
	w        *watcher
	sinks    []string
}

// agent is a configured agent: its sources, listeners, sinks and proxies.
type agent struct {
	log             *slog.Logger
	sources         []*agentSource
	byName          map[string]*agentSource
	pools           []*m2mtoken.Pool // of the sources that share a client
	listens         []listenSpec
	gid             int // --group's ID, or -1
	proxies         []*proxy
	shutdownTimeout time.Duration
	maxConns        int // --max-conns
	clk             clock.Clock
	started         time.Time

	tokenServed, tokenFailed, refused atomic.Uint64
}

func cmdAgent(args []string, stdout, stderr io.Writer) error {
	c := newFlags("agent", agentSynopsis)
	fs := c.fs
	creds := registerCredFlags(c)
	configFile := fs.String("config", os.Getenv("M2MTOKEN_AGENT_CONFIG"), "JSON file with the sources, instead of the credential flags (env M2MTOKEN_AGENT_CONFIG)")
	cacheMode := fs.String("cache", "memory", "cache of the default source: memory (this process only; \"none\" is its old name) or file (survives restarts; see --cache-dir)")
	cacheDir := fs.String("cache-dir", "", "directory of --cache file (default: M2MTOKEN_CACHE_DIR, else the user cache directory's m2mtoken folder)")
	var listens, sinks, proxies multiFlag
	fs.Var(&listens, "listen", "serve the token endpoint on `ADDR`: unix:PATH or 127.0.0.1:PORT (repeatable)")
	fs.Var(&sinks, "sink", "write each new token of source NAME to the file PATH: `NAME=PATH` (repeatable)")
	fs.Var(&proxies, "proxy", "forward requests on LISTEN to UPSTREAM with a token of source NAME: `NAME=LISTEN=UPSTREAM` (repeatable)")
	group := fs.String("group", "", "let this group use the Unix sockets (mode 0660) and read the sinks (0640); default: the agent's user only (0600)")
	logJSON := fs.Bool("log-json", false, "log JSON lines instead of text")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	shutdown := fs.Duration("shutdown-timeout", 10*time.Second, "on SIGTERM, how long to let requests in flight finish")
	maxConns := fs.Int("max-conns", defaultMaxConns, "serve at most `N` connections at once on each listener, fewer if the open-file limit needs it (see Limits above)")
	if ok, err := c.parse(args, stdout, stderr); !ok {
		return err
	}
	// report prints a usage error as the other commands do.
	report := func(err error) error {
		var ue usageError
		if errors.As(err, &ue) {
			return c.usageError(stderr, "%s", ue.Error())
		}
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return c.usageError(stderr, "--log-level %q: use debug, info, warn or error", *logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(stderr, opts)
	if *logJSON {
		h = slog.NewJSONHandler(stderr, opts)
	}
	log := slog.New(h)
	for _, t := range unreadVars(os.Environ()) {
		log.Warn(t.String(), slog.String("variable", t.Given), slog.String("did_you_mean", t.Meant))
	}

	var specs []sourceSpec
	if *configFile != "" {
		credFlags := map[string]bool{"cache": true, "cache-dir": true}
		for _, d := range credFlagDefs() {
			credFlags[d.flag] = true
		}
		// The CA is trusted by every source of the file that names none.
		delete(credFlags, "ca-file")
		var set []string
		for name := range creds.set() {
			if credFlags[name] {
				set = append(set, "--"+name)
			}
		}
		if len(set) > 0 {
			slices.Sort(set)
			return c.usageError(stderr, "%s and --config: the config file defines the sources; remove %s, or put it in the file", strings.Join(set, ", "), strings.Join(set, ", "))
		}
		var err error
		getenv := func(v string) string {
			if v == "M2MTOKEN_CA_FILE" {
				ca, _ := creds.lookup(v)
				return ca
			}
			return os.Getenv(v)
		}
		if specs, err = loadConfigFile(*configFile, getenv); err != nil {
			return err
		}
	} else {
		spec, err := defaultSource(creds, *cacheMode, *cacheDir)
		if err != nil {
			return report(err)
		}
		specs = []sourceSpec{spec}
	}
	a, err := newAgent(specs, listens, sinks, proxies, *group, log)
	if err != nil {
		return report(err)
	}
	a.shutdownTimeout = *shutdown
	if *maxConns < 1 {
		return c.usageError(stderr, "--max-conns %d: give a number of connections, 1 or more", *maxConns)
	}
	a.maxConns = *maxConns
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return a.run(ctx, stop)
}

// defaultSource is the source named "default", from the same flags and
// environment as 'm2mtoken token', read by the same code.
func defaultSource(creds *credFlags, cacheMode, cacheDir string) (sourceSpec, error) {
	const origin = `source "default" (from the flags and environment)`
	cfg, err := creds.config()
	if err != nil {
		return sourceSpec{}, fmt.Errorf("%s: %s", origin, strings.TrimPrefix(err.Error(), "m2mtoken: "))
	}
	cache, err := newCache(cacheMode, cacheDir, "--cache", "--cache-dir")
	if err != nil {
		return sourceSpec{}, usageError{err}
	}
	cfg.Cache = cache
	return sourceSpec{name: "default", origin: origin, cfg: cfg, fieldName: creds.fieldName}, nil
}

// newAgent checks the command line against the sources and creates the
// sources. It opens nothing.
func newAgent(specs []sourceSpec, listens, sinks, proxies []string, group string, log *slog.Logger) (*agent, error) {
	a := &agent{log: log, byName: map[string]*agentSource{}, gid: -1, clk: clock.Real{}, shutdownTimeout: 10 * time.Second, maxConns: defaultMaxConns}
	if len(listens)+len(sinks)+len(proxies) == 0 {
		return nil, usageError{errors.New("nothing to serve: give --listen unix:PATH (or 127.0.0.1:PORT), --sink NAME=PATH or --proxy NAME=LISTEN=UPSTREAM")}
	}
	hasUnix := false
	for _, v := range listens {
		l, err := parseListen("--listen", v)
		if err != nil {
			return nil, usageError{err}
		}
		hasUnix = hasUnix || l.network == "unix"
		a.listens = append(a.listens, l)
	}
	var sinkSpecs []sinkSpec
	for _, v := range sinks {
		s, err := parseSink(v)
		if err != nil {
			return nil, usageError{err}
		}
		sinkSpecs = append(sinkSpecs, s)
	}
	var proxySpecs []proxySpec
	for _, v := range proxies {
		p, err := parseProxy(v)
		if err != nil {
			return nil, usageError{err}
		}
		hasUnix = hasUnix || p.listen.network == "unix"
		proxySpecs = append(proxySpecs, p)
	}
	if group != "" {
		if !hasUnix && len(sinkSpecs) == 0 {
			return nil, usageError{errors.New("--group is set but there is no Unix socket (--listen unix:PATH) or --sink to share")}
		}
		gid, err := lookupGroup(group)
		if err != nil {
			return nil, usageError{err}
		}
		a.gid = gid
	}
	for _, spec := range specs {
		a.byName[spec.name] = &agentSource{name: spec.name, cfg: spec.cfg}
		a.sources = append(a.sources, a.byName[spec.name])
	}
	for _, s := range sinkSpecs {
		src := a.byName[s.source]
		if src == nil {
			return nil, usageError{fmt.Errorf("--sink %s=%s: no source named %q; the agent has %s", s.source, s.path, s.source, strings.Join(a.names(), ", "))}
		}
		if src.cfg.DPoPKey != nil {
			return nil, usageError{fmt.Errorf("--sink %s=%s: source %q binds its tokens to a DPoP key, and a program that reads a file cannot sign the proof each request needs: use --proxy %s=LISTEN=UPSTREAM, or the token endpoint with ?url=", s.source, s.path, s.source, s.source)}
		}
		src.sinks = append(src.sinks, s.path)
	}
	for _, p := range proxySpecs {
		if a.byName[p.source] == nil {
			return nil, usageError{fmt.Errorf("--proxy %s=%s=%s: no source named %q; the agent has %s", p.source, p.listen, p.upstream, p.source, strings.Join(a.names(), ", "))}
		}
	}
	// Sources of one client (the config file's sources that differ only in
	// name, audience, scopes and organization) share one pool: one
	// connection pool, quota view and error memory for the client.
	clients := map[string][]string{}
	for _, spec := range specs {
		if spec.client != "" {
			clients[spec.client] = append(clients[spec.client], spec.name)
		}
	}
	pools := map[string]*m2mtoken.Pool{}
	for i, spec := range specs {
		s := a.sources[i]
		s.endpoint = spec.cfg.TokenURL
		if spec.cfg.Domain != "" {
			s.endpoint = spec.cfg.Domain
		}
		cfg := spec.cfg
		cfg.Logger = log.With(slog.String("source", spec.name))
		if spec.fieldName != nil {
			cfg.FieldNames = spec.fieldName // for the hints of failed requests
		}
		var src *m2mtoken.TokenSource
		var err error
		if names := clients[spec.client]; len(names) > 1 {
			p := pools[spec.client]
			if p == nil {
				cfg.Logger = log.With(slog.String("sources", strings.Join(names, ",")))
				if p, err = m2mtoken.NewPool(cfg); err == nil {
					pools[spec.client] = p
					a.pools = append(a.pools, p)
				}
			}
			if err == nil {
				src, err = p.Source(m2mtoken.TokenRequest{Audience: spec.cfg.Audience, Scopes: spec.cfg.Scopes, Organization: spec.cfg.Organization})
			}
		} else {
			src, err = m2mtoken.New(cfg)
		}
		if err != nil {
			a.closeSources()
			msg := strings.TrimPrefix(err.Error(), "m2mtoken: ")
			var ce *m2mtoken.ConfigError
			if errors.As(err, &ce) && spec.fieldName != nil {
				msg = ce.Describe(spec.fieldName)
			}
			return nil, fmt.Errorf("%s: %s", spec.origin, msg)
		}
		s.src = src
	}
	for _, p := range proxySpecs {
		a.proxies = append(a.proxies, newProxy(p, a.byName[p.source].src, log))
	}
	for _, s := range a.sources {
		sinks, name, gid := s.sinks, s.name, a.gid
		s.w = newWatcher(s.name, s.src, a.clk, log, func(tok *oauth2.Token) error {
			if err := writeSinks(sinks, tok, gid); err != nil {
				log.Error("writing the token to a sink failed; trying again", slog.String("source", name), slog.Any("error", err))
				return err
			}
			return nil
		})
	}
	return a, nil
}

func (a *agent) closeSources() {
	for _, s := range a.sources {
		if s.src != nil {
			s.src.Close()
		}
	}
	for _, p := range a.pools {
		p.Close()
	}
}

// server is one listener and what serves it.
type server struct {
	srv  *http.Server
	ln   net.Listener
	spec listenSpec
}

// run opens the listeners, serves until ctx is done, and shuts down:
// listeners closed (socket files removed), requests in flight given
// shutdownTimeout, watchers stopped, sources closed. stop restores the
// default signal handling, so that a second signal kills the agent.
func (a *agent) run(ctx context.Context, stop func()) error {
	a.started = time.Now()
	defer a.closeSources()
	a.log.Info("starting", slog.String("version", version()), slog.Any("sources", a.names()))
	var servers []server
	closeAll := func() {
		for _, s := range servers {
			s.ln.Close()
			if s.spec.network == "unix" {
				os.Remove(s.spec.addr) // the listener leaves it to us
			}
		}
	}
	errLog := slog.NewLogLogger(a.log.Handler(), slog.LevelWarn)
	perListener, berr := connBudget(a.maxConns, len(a.listens)+len(a.proxies), len(a.proxies))
	if berr != nil {
		return berr
	}
	a.log.Info("limits", slog.Int("connections_per_listener", perListener), slog.Duration("header_timeout", headerTimeout))
	for _, p := range a.proxies {
		p.capUpstream(perListener)
	}
	open := func(flag string, l listenSpec, h http.Handler, attrs ...any) error {
		ln, err := listen(flag, l, a.gid)
		if err != nil {
			return err
		}
		spec := l
		if l.network == "tcp" {
			spec.addr = ln.Addr().String()
		}
		ln = newLimitListener(ln, perListener)
		srv := &http.Server{Handler: bodyDeadline(h), ReadHeaderTimeout: headerTimeout, IdleTimeout: 2 * time.Minute,
			MaxHeaderBytes: maxHeaderBytes, ErrorLog: errLog}
		servers = append(servers, server{srv: srv, ln: ln, spec: spec})
		a.log.Info("listening", append(attrs, slog.String("addr", spec.String()))...)
		return nil
	}
	for _, l := range a.listens {
		h := a.endpoint()
		if l.network == "tcp" {
			h = a.guard(true, h)
		}
		if err := open("--listen", l, h, slog.String("serves", "token endpoint")); err != nil {
			closeAll()
			return err
		}
	}
	for _, p := range a.proxies {
		h := p.handler
		if p.spec.listen.network == "tcp" {
			h = a.guard(false, h)
		}
		if err := open("--proxy "+p.spec.source+"=LISTEN", p.spec.listen, h, slog.String("serves", "proxy"), slog.String("source", p.spec.source), slog.String("upstream", p.spec.upstream.Redacted())); err != nil {
			closeAll()
			return err
		}
		p.addr = servers[len(servers)-1].spec.String()
	}

	wctx, stopWatchers := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, s := range a.sources {
		wg.Add(1)
		go func() { defer wg.Done(); s.w.run(wctx) }()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for _, s := range a.sources {
			select {
			case <-s.w.ready:
			case <-wctx.Done():
				return
			}
		}
		a.log.Info("ready: every source holds a token", slog.Any("sources", a.names()))
	}()
	errc := make(chan error, len(servers))
	for _, s := range servers {
		go func() {
			if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serving %s: %w", s.spec, err)
			}
		}()
	}

	var err error
	select {
	case <-ctx.Done():
		a.log.Info("stopping")
	case err = <-errc:
		a.log.Error("stopping", slog.Any("error", err))
	}
	stop()
	sctx, cancel := context.WithTimeout(context.Background(), a.shutdownTimeout)
	var swg sync.WaitGroup
	for _, s := range servers {
		swg.Add(1)
		go func() {
			defer swg.Done()
			if serr := s.srv.Shutdown(sctx); serr != nil {
				a.log.Warn("requests still in flight at the shutdown timeout were cut", slog.String("addr", s.spec.String()))
				s.srv.Close()
			}
			if s.spec.network == "unix" {
				// The listener removed its socket file; make sure.
				if rerr := os.Remove(s.spec.addr); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
					a.log.Warn("removing the socket file", slog.String("path", s.spec.addr), slog.Any("error", rerr))
				}
			}
		}()
	}
	swg.Wait()
	cancel()
	stopWatchers()
	wg.Wait()
	for _, p := range a.proxies {
		p.closeIdle()
	}
	a.closeSources()
	a.log.Info("stopped")
	return err
}
