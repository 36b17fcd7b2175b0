// The agent's lifecycle: Run opens the listeners, keeps every source's
// token warm, serves until its context is done, and shuts down cleanly.

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
	srv  *http.Server
	ln   net.Listener
	spec listenSpec
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
		srv := &http.Server{Handler: bodyDeadline(h, a.bodyGrace), ReadHeaderTimeout: headerTimeout, IdleTimeout: 2 * time.Minute,
			MaxHeaderBytes: maxHeaderBytes, ErrorLog: errLog}
		servers = append(servers, server{srv: srv, ln: ln, spec: spec})
		a.log.Info("listening", append(attrs, slog.String("addr", spec.String()))...)
		return nil
	}
	var endpoints []string
	for _, l := range a.listens {
		h := a.endpoint()
		if l.network == "tcp" {
			h = a.guard(true, h)
		}
		if err := open("--listen", l, h, slog.String("serves", "token endpoint")); err != nil {
			closeAll()
			return err
		}
		endpoints = append(endpoints, servers[len(servers)-1].spec.String())
	}
	for _, p := range a.proxies {
		h := p.handler
		if p.spec.listen.network == "tcp" {
			h = a.guard(p.spec.requireHeader, h)
		}
		if err := open("--proxy "+p.spec.source+"=LISTEN", p.spec.listen, h, slog.String("serves", "proxy"), slog.String("source", p.spec.source), slog.String("upstream", p.spec.upstream.Redacted())); err != nil {
			closeAll()
			return err
		}
		a.mu.Lock()
		p.addr = servers[len(servers)-1].spec.String()
		a.mu.Unlock()
	}
	a.mu.Lock()
	a.endpoints = endpoints
	a.mu.Unlock()
	listened = true
	close(a.listening)

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
		close(a.ready)
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
		// The cause, if ctx was cancelled with one, says who asked, such
		// as the command's signal.
		if cause := context.Cause(ctx); cause != ctx.Err() {
			a.log.Info("stopping", slog.String("reason", cause.Error()))
		} else {
			a.log.Info("stopping")
		}
	case err = <-errc:
		a.log.Error("stopping", slog.Any("error", err))
	}
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
