// The agent's lifecycle: Run opens the listeners, keeps every source's
// token warm, serves until its context is done, and shuts down cleanly.
// A reload (reload.go) changes the sources and proxies while it runs.

package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// server is one listener and what serves it.
type server struct {
	srv   *http.Server
	ln    net.Listener
	spec  listenSpec
	attrs []any // what it serves, for the log
}

// Run opens the listeners, serves until ctx is done, and shuts down:
// listeners closed (socket files removed), requests in flight given
// Config.ShutdownTimeout, watchers stopped, sources closed. Sinks stay:
// their tokens are valid until they expire, so readers ride out a
// restart. Run returns nil after a shutdown that ctx asked for, and the
// error otherwise (a listener that cannot be opened, or that fails). Run
// may be called once.
func (a *Agent) Run(ctx context.Context) error {
	if a.ran.Swap(true) {
		return errors.New("agent: Run was called twice")
	}
	a.started = time.Now()
	defer a.closeSources()
	listened := false
	defer func() {
		if !listened {
			close(a.listening)
		}
	}()
	sources, proxies := a.current()
	perListener, berr := connBudget(a.maxConns, len(a.listens)+len(proxies), len(proxies))
	if berr != nil {
		return berr
	}
	a.log.Info("limits", slog.Int("connections_per_listener", perListener), slog.Duration("header_timeout", headerTimeout))
	var servers []*server
	closeAll := func() {
		for _, s := range servers {
			s.closeListener()
		}
	}
	var endpoints []string
	for _, l := range a.listens {
		h := a.endpoint()
		if l.network == "tcp" {
			h = a.guard(true, h)
		}
		s, err := a.open("--listen", l, h, perListener, slog.String("serves", "token endpoint"))
		if err != nil {
			closeAll()
			return err
		}
		a.listeningLog(s)
		servers = append(servers, s)
		endpoints = append(endpoints, s.spec.String())
	}
	for _, p := range proxies {
		if err := a.openProxy(p.slot, p, perListener); err != nil {
			closeAll()
			return err
		}
		a.listeningLog(p.slot.srv)
		servers = append(servers, p.slot.srv)
	}
	a.mu.Lock()
	a.endpoints = endpoints
	a.mu.Unlock()

	wctx, stopWatchers := context.WithCancel(context.Background())
	a.reloadMu.Lock()
	a.wctx = wctx
	for _, s := range sources {
		a.startWatcher(s)
	}
	a.running = true
	a.reloadMu.Unlock()
	listened = true
	close(a.listening)
	a.watchers.Add(1)
	go func() {
		defer a.watchers.Done()
		if a.waitReady(wctx) {
			a.log.Info("ready: every source holds a token", slog.Any("sources", a.names()))
			close(a.ready)
		}
	}()
	for _, s := range servers {
		a.serve(s)
	}

	var err error
	select {
	case <-ctx.Done():
		// The cause, if ctx was cancelled with one, says who asked, such
		// as the command's signal.
		if cause := context.Cause(ctx); cause != ctx.Err() {
			a.log.Info("stopping", slog.String("reason", cause.Error()))
		} else {
			a.log.Info("stopping")
		}
	case err = <-a.errc:
		a.log.Error("stopping", slog.Any("error", err))
	}
	// No reload from now on; one under way ends first.
	a.reloadMu.Lock()
	a.running = false
	a.reloadMu.Unlock()
	_, proxies = a.current()
	servers = servers[:len(a.listens)]
	for _, p := range proxies {
		servers = append(servers, p.slot.srv)
	}
	sctx, cancel := context.WithTimeout(context.Background(), a.shutdownTimeout)
	var swg sync.WaitGroup
	for _, s := range servers {
		swg.Add(1)
		go func() { defer swg.Done(); a.shutdown(sctx, s) }()
	}
	swg.Wait()
	a.draining.Wait()
	cancel()
	stopWatchers()
	a.watchers.Wait()
	for _, p := range proxies {
		p.closeIdle()
	}
	a.closeSources()
	a.log.Info("stopped")
	return err
}

// waitReady waits until every source the agent has (after any reload)
// holds a token, and reports whether they do; false if ctx is done
// first.
func (a *Agent) waitReady(ctx context.Context) bool {
	for {
		a.smu.RLock()
		sources, changed := a.sources, a.changed
		a.smu.RUnlock()
		var waiting *agentSource
		for _, s := range sources {
			select {
			case <-s.w.ready:
				continue
			default:
			}
			waiting = s
			break
		}
		if waiting == nil {
			return true
		}
		select {
		case <-waiting.w.ready:
		case <-changed:
		case <-ctx.Done():
			return false
		}
	}
}

// startWatcher starts s's watcher, until Run stops or a reload removes s.
// reloadMu is held.
func (a *Agent) startWatcher(s *agentSource) {
	ctx, stop := context.WithCancel(a.wctx)
	s.stop = stop
	a.watchers.Add(1)
	go func() {
		defer a.watchers.Done()
		s.w.run(ctx)
	}()
}

// open opens the listener l for h (flag names it in errors), to serve at
// most per connections at once; attrs say what it serves, in the log.
func (a *Agent) open(flag string, l listenSpec, h http.Handler, per int, attrs ...any) (*server, error) {
	ln, err := listen(flag, l, a.gid)
	if err != nil {
		return nil, err
	}
	spec := l
	if l.network == "tcp" {
		spec.addr = ln.Addr().String()
	}
	ln = newLimitListener(ln, per)
	srv := &http.Server{Handler: bodyDeadline(h, a.bodyGrace), ReadHeaderTimeout: headerTimeout, IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: maxHeaderBytes, ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn)}
	return &server{srv: srv, ln: ln, spec: spec, attrs: attrs}, nil
}

// listeningLog logs where s listens, and what it serves.
func (a *Agent) listeningLog(s *server) {
	a.log.Info("listening", append(s.attrs, slog.String("addr", s.spec.String()))...)
}

// openProxy opens the listener of sl, whose proxy is p, for per
// connections (and as many upstream).
func (a *Agent) openProxy(sl *proxySlot, p *proxy, per int) error {
	p.capUpstream(per)
	s, err := a.open(p.spec.listenName, p.spec.listen, a.serveProxy(sl), per, slog.String("serves", "proxy"), slog.String("source", p.spec.source), slog.String("upstream", p.spec.upstream.Redacted()))
	if err != nil {
		return err
	}
	sl.srv = s
	addr := s.spec.String()
	sl.addr.Store(&addr)
	return nil
}

// serve serves s until it is shut down; if it fails, Run stops.
func (a *Agent) serve(s *server) {
	go func() {
		if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
			select {
			case a.errc <- fmt.Errorf("serving %s: %w", s.spec, err):
			default:
			}
		}
	}()
}

// closeListener closes s's listener, which was never served.
func (s *server) closeListener() {
	s.ln.Close()
	if s.spec.network == "unix" {
		os.Remove(s.spec.addr) // the listener leaves it to us
	}
}

// shutdown stops s: its listener closed, its socket file removed, its
// requests in flight given until ctx is done, then cut.
func (a *Agent) shutdown(ctx context.Context, s *server) {
	if err := s.srv.Shutdown(ctx); err != nil {
		a.log.Warn("requests still in flight at the shutdown timeout were cut", slog.String("addr", s.spec.String()))
		s.srv.Close()
	}
	if s.spec.network == "unix" {
		// The listener removed its socket file; make sure.
		if err := os.Remove(s.spec.addr); err != nil && !errors.Is(err, os.ErrNotExist) {
			a.log.Warn("removing the socket file", slog.String("path", s.spec.addr), slog.Any("error", err))
		}
	}
}
