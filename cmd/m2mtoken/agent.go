// m2mtoken agent: the command of internal/agent. This file has its flags
// and their parsing into an agent.Config, its logging, its signals
// (SIGTERM and SIGINT stop it cleanly, SIGHUP reloads its config file)
// and its exit status; the agent itself, with its config file format, is
// the package's.

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/m2mtoken/m2mtoken/internal/agent"
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
      LISTEN is unix:PATH (only the socket's users can call the API as the
      agent) or 127.0.0.1:PORT (any local process can; add
      --proxy-require-header if the clients can send "M2MToken-Agent: 1").

One source, "default", comes from the same flags and environment as
'm2mtoken token'; or several from a JSON file (--config):

  {"sources": [{"name": "billing", "domain": "tenant.eu.auth0.com",
    "client_id": "...", "client_secret_env": "BILLING_SECRET",
    "audience": "https://billing.example.com/", "scopes": ["read:invoices"]}]}

` + agent.LimitsHelp + `

Stops cleanly on SIGTERM or SIGINT. SIGHUP reloads --config: sources and
proxies added, removed or changed, with no connection dropped and no token
request for a source the file left as it was; a file with a mistake changes
nothing (the log says why). The secret, key and assertion files a source
names are followed as they change, with no signal.`

// multiFlag is a flag that can be given more than once.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// agentSignals are the signals the agent handles. SIGTERM and SIGINT stop
// it cleanly: listeners closed, socket files removed, requests in flight
// finished. SIGHUP, which asks a daemon to reload its configuration,
// reloads the config file.
var agentSignals = []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP}

// stopSignal is the cause of a stop that a signal asked for, as the
// agent's "stopping" line gives it.
type stopSignal struct{ sig os.Signal }

func (s stopSignal) Error() string { return "signal: " + s.sig.String() }

// cmdAgent runs the agent until SIGTERM or SIGINT, and reloads on SIGHUP.
// Once the first signal has stopped it, the default handling is back: a
// second one kills it.
func cmdAgent(args []string, stdout, stderr io.Writer) error {
	ctx, stop := context.WithCancelCause(context.Background())
	defer stop(nil)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, agentSignals...)
	defer signal.Stop(sigs)
	// One reload waiting is enough: it reads the file as it is then.
	hup := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case sig := <-sigs:
				if sig == syscall.SIGHUP {
					select {
					case hup <- struct{}{}:
					default:
					}
					continue
				}
				signal.Stop(sigs)
				stop(stopSignal{sig})
			}
		}
	}()
	return runAgent(ctx, args, stdout, stderr, hup)
}

// runAgent parses the agent's command line and runs it until ctx is
// done; each receive from hup reloads the config file.
func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer, hup <-chan struct{}) error {
	c := newFlags("agent", agentSynopsis)
	fs := c.fs
	creds := registerCredFlags(c)
	configFile := fs.String("config", os.Getenv("M2MTOKEN_AGENT_CONFIG"), "JSON file with the sources (and any proxies), instead of the credential flags; only the agent's user or root may write it (env M2MTOKEN_AGENT_CONFIG)")
	cacheMode := fs.String("cache", "memory", "cache of the default source: memory (this process only; \"none\" is its old name) or file (survives restarts; see --cache-dir)")
	cacheDir := fs.String("cache-dir", "", "directory of --cache file (default: M2MTOKEN_CACHE_DIR, else the user cache directory's m2mtoken folder)")
	var listens, sinks, proxies multiFlag
	fs.Var(&listens, "listen", "serve the token endpoint on `ADDR`: unix:PATH or 127.0.0.1:PORT (repeatable)")
	fs.Var(&sinks, "sink", "write each new token of source NAME to the file PATH: `NAME=PATH` (repeatable)")
	fs.Var(&proxies, "proxy", "forward requests on LISTEN (unix:PATH or 127.0.0.1:PORT) to UPSTREAM with a token of source NAME: `NAME=LISTEN=UPSTREAM` (repeatable)")
	requireHeader := fs.Bool("proxy-require-header", false, "refuse (403) every request to a --proxy on TCP that lacks the header \"M2MToken-Agent: 1\", which a request forged through a server that fetches URLs cannot add; the header is not forwarded")
	group := fs.String("group", "", "let this group use the Unix sockets (mode 0660) and read the sinks (0640); default: the agent's user only (0600)")
	logJSON := fs.Bool("log-json", false, "log JSON lines instead of text")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	shutdown := fs.Duration("shutdown-timeout", 10*time.Second, "on SIGTERM, how long to let requests in flight finish")
	maxConns := fs.Int("max-conns", agent.DefaultMaxConns, "serve at most `N` connections at once on each listener, fewer if the open-file limit needs it (see Limits above)")
	if ok, err := c.parse(args, stdout, stderr); !ok {
		return err
	}
	// report prints a usage error as the other commands do.
	report := func(err error) error {
		var fe *agent.FlagError
		if errors.As(err, &fe) {
			return c.usageError(stderr, "%s", fe.Error())
		}
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return c.usageError(stderr, "--log-level %q: use debug, info, warn or error", *logLevel)
	}
	if *maxConns < 1 {
		return c.usageError(stderr, "--max-conns %d: give a number of connections, 1 or more", *maxConns)
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

	cfg := agent.Config{Group: *group, MaxConns: *maxConns, ShutdownTimeout: *shutdown, Logger: log}
	getenv := func(v string) string {
		if v == "M2MTOKEN_CA_FILE" {
			ca, _ := creds.lookup(v)
			return ca
		}
		return os.Getenv(v)
	}
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
		if cfg.Sources, cfg.Proxies, err = agent.LoadConfigFile(*configFile, getenv); err != nil {
			return err
		}
	} else {
		src, err := defaultSource(creds, *cacheMode, *cacheDir)
		if err != nil {
			return report(err)
		}
		cfg.Sources = []agent.Source{src}
	}
	for _, v := range listens {
		cfg.Listeners = append(cfg.Listeners, agent.Listener{Addr: v})
	}
	for _, v := range sinks {
		s, err := agent.ParseSink(v)
		if err != nil {
			return c.usageError(stderr, "%s", err)
		}
		cfg.Sinks = append(cfg.Sinks, s)
	}
	onTCP := 0
	for _, v := range proxies {
		p, err := agent.ParseProxy(v)
		if err != nil {
			return c.usageError(stderr, "%s", err)
		}
		if *requireHeader && !strings.HasPrefix(p.Listen, "unix:") {
			p.RequireHeader = true
			onTCP++
		}
		cfg.Proxies = append(cfg.Proxies, p)
	}
	if *requireHeader && onTCP == 0 {
		return c.usageError(stderr, "--proxy-require-header is set but no --proxy listens on TCP: a proxy on a Unix socket takes no header (the socket's mode says who may connect)")
	}
	a, err := agent.New(cfg)
	if err != nil {
		return report(err)
	}
	log.Info("starting", slog.String("version", version()), slog.Any("sources", sourceNames(cfg.Sources)))
	rctx, stopReloads := context.WithCancel(ctx)
	reloads := make(chan struct{})
	go func() {
		defer close(reloads)
		for {
			select {
			case <-rctx.Done():
				return
			case <-hup:
			}
			if *configFile == "" {
				log.Info("SIGHUP: nothing to reload: the source comes from the flags and the environment, which a running process cannot read again (restart the agent to change them); the secret, key and assertion files they name are followed as they change")
				continue
			}
			// Errors are logged: the agent goes on as it was.
			a.ReloadFile(*configFile, getenv)
		}
	}()
	err = a.Run(ctx)
	stopReloads()
	<-reloads
	return err
}

// sourceNames returns the sources' names, sorted.
func sourceNames(srcs []agent.Source) []string {
	names := make([]string, 0, len(srcs))
	for _, s := range srcs {
		names = append(names, s.Name)
	}
	slices.Sort(names)
	return names
}

// defaultSource is the source named "default", from the same flags and
// environment as 'm2mtoken token', read by the same code. Its errors name
// the flags and variables; a bad --cache or --cache-dir is a usage error.
func defaultSource(creds *credFlags, cacheMode, cacheDir string) (agent.Source, error) {
	const origin = `source "default" (from the flags and environment)`
	cfg, err := creds.config()
	if err != nil {
		return agent.Source{}, fmt.Errorf("%s: %s", origin, strings.TrimPrefix(err.Error(), "m2mtoken: "))
	}
	cache, err := agent.NewCache(cacheMode, cacheDir, "--cache", "--cache-dir")
	if err != nil {
		return agent.Source{}, &agent.FlagError{Err: err}
	}
	cfg.Cache = cache
	return agent.Source{Name: "default", Origin: origin, Config: cfg, Warnings: creds.fileWarnings()}, nil
}
