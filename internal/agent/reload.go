// Reloading the config file while the agent runs (the command's SIGHUP):
// sources and proxies added, removed or changed, with no connection
// dropped and no token request for what the file left as it was.

package agent

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/m2mtoken/m2mtoken/internal/settings"
)

// ReloadFile reads the config file at path again, as LoadConfigFile
// does, and applies it (see Reload). A file that cannot be read, does not
// parse or does not pass every check New makes changes nothing: the
// agent logs the error, in the file's words, and goes on with the
// configuration it has.
func (a *Agent) ReloadFile(path string, getenv func(string) string) error {
	unset := false
	sources, proxies, err := LoadConfigFile(path, func(v string) string {
		val := getenv(v)
		unset = unset || (val == "" && v != settings.CAFile)
		return val
	})
	if err != nil && unset {
		// The error says to set the variable: not in a running agent.
		err = fmt.Errorf("%w (a running agent keeps the environment it started with: restart it with the variable set, or name a file in \"client_secret_file\", which needs no restart)", err)
	}
	if err == nil {
		err = a.reload(sources, proxies, slog.String("file", path))
	}
	if err != nil {
		a.log.Error("config file not reloaded: the agent goes on with the configuration it has", slog.String("file", path), slog.Any("error", err))
	}
	return err
}

// Reload makes sources and proxies (the config file's: each with its
// Origin) the agent's, while Run serves, and logs one line that says
// what changed. It waits until Run listens; once Run has failed or
// begun to stop, it returns an error. The listeners, sinks and proxies of the command's flags
// stay. The sources are compared by what the config file said of them
// (and the secret's variable's value):
//
//   - a source the file left as it was keeps its library source, token,
//     watcher and sinks: no token request, no gap;
//   - an added source is served at once, as at start: its first callers
//     wait for its first token, and /healthz is 503 until it has one;
//   - a removed source is not served (404, as an unknown name), its
//     watcher stops, and it is closed once the requests in flight
//     through it end;
//   - a changed source is replaced at once by a new one, as if removed
//     and added: its token was issued for what the file no longer says
//     (another client, audience, scopes, organization, endpoint or key).
//
// A proxy keeps its listener (and its clients' connections) while its
// address stays: a new upstream or source applies to the requests that
// come after. A removed proxy stops accepting and lets its requests in
// flight finish. An error (a check New makes, a listener that cannot be
// opened, a source the library refuses) changes nothing.
func (a *Agent) Reload(sources []Source, proxies []Proxy) error {
	return a.reload(sources, proxies)
}

func (a *Agent) reload(sources []Source, fileProxies []Proxy, attrs ...any) error {
	<-a.listening // Run has opened its listeners, or failed to
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	if !a.running {
		return errors.New("the agent is not running")
	}
	cfg := a.cfg
	cfg.Sources, cfg.Proxies = sources, append([]Proxy(nil), fileProxies...)
	for _, p := range a.cfg.Proxies {
		if p.Origin == "" { // --proxy
			cfg.Proxies = append(cfg.Proxies, p)
		}
	}
	p, err := check(cfg, false)
	if err != nil {
		return err
	}
	per, err := connBudget(a.maxConns, len(a.listens)+len(p.proxies), len(p.proxies))
	if err != nil {
		return err
	}
	curSources, _ := a.current()
	curSlots := a.listeners()
	cur := make(map[string]*agentSource, len(curSources))
	for _, s := range curSources {
		cur[s.name] = s
	}
	next, order, err := a.build(p.sources, cur)
	if err != nil {
		return err
	}
	slots, swaps := a.slots(p.proxies, next, curSlots)
	var opened []*proxySlot
	for i, sl := range slots {
		switch {
		case sl.srv == nil:
			err = a.openProxy(sl, swaps[i], per)
			if err == nil {
				opened = append(opened, sl)
			}
		case swaps[i] != nil:
			swaps[i].capUpstream(per)
		}
		if err != nil {
			break
		}
	}
	if err != nil {
		// Nothing changes: the new listeners close, the new sources too.
		for _, sl := range opened {
			sl.srv.closeListener()
		}
		for _, s := range order {
			if cur[s.name] != s {
				s.h.unuse(a)
			}
		}
		return err
	}
	ch := a.changes(cur, next, curSlots, slots, swaps)
	var swapped []*proxy
	for i, sl := range slots {
		if sl.cur != nil && swaps[i] != nil {
			swapped = append(swapped, sl.cur)
		}
	}
	a.commit(order, slots, swaps)
	for _, p := range swapped {
		// Its requests in flight go on; its upstream connections, its
		// own, are of no use to the proxy that took its place.
		p.retire()
	}

	for name, s := range cur {
		if next[name] != s {
			s.stop() // before its source may close: the watcher sees no error
			s.h.unuse(a)
		}
	}
	for _, s := range order {
		if cur[s.name] != s {
			for _, w := range s.warnings {
				a.log.Warn(w, slog.String("source", s.name))
			}
			a.startWatcher(s)
		}
	}
	for _, sl := range opened {
		a.listeningLog(sl.srv)
		a.serve(sl.srv)
	}
	kept := make(map[*proxySlot]bool, len(slots))
	for _, sl := range slots {
		kept[sl] = true
	}
	for _, sl := range curSlots {
		if !kept[sl] {
			a.draining.Add(1)
			go func() {
				defer a.draining.Done()
				ctx, cancel := context.WithTimeout(context.Background(), a.shutdownTimeout)
				defer cancel()
				a.shutdown(ctx, sl.srv)
				sl.cur.closeIdle() // its own upstream connections
			}()
			// Shutdown closes the listener first: once it has, no new
			// connection reaches the removed proxy.
			<-sl.srv.ln.(*limitListener).done
		}
	}
	ch.log(a.log, attrs)
	return nil
}

// changes is what a reload changes, as its log line says it.
type changes struct {
	sources, proxies       [3][]string // added, removed, changed
	sourcesN, proxiesN     int         // after the reload
	sourcesKept, proxyKept int
}

// changes compares the sources and the config file's proxies before a
// reload (cur, curSlots) and after (next, slots with their swaps). A
// proxy is named by the address it listens on; a --proxy, which no reload
// changes, is not named (its source is, if it changed).
func (a *Agent) changes(cur, next map[string]*agentSource, curSlots, slots []*proxySlot, swaps []*proxy) changes {
	var c changes
	c.sourcesN = len(next)
	for name, s := range next {
		switch old := cur[name]; {
		case old == nil:
			c.sources[0] = append(c.sources[0], name)
		case old != s:
			c.sources[2] = append(c.sources[2], name)
		default:
			c.sourcesKept++
		}
	}
	for name := range cur {
		if next[name] == nil {
			c.sources[1] = append(c.sources[1], name)
		}
	}
	old := map[*proxySlot]bool{}
	for _, sl := range curSlots {
		old[sl] = true
	}
	now := map[*proxySlot]bool{}
	for i, sl := range slots {
		now[sl] = true
		p := sl.cur
		if swaps[i] != nil {
			p = swaps[i]
		}
		if p.spec.origin == "" {
			continue
		}
		c.proxiesN++
		switch {
		case !old[sl]:
			c.proxies[0] = append(c.proxies[0], sl.address())
		case swaps[i] != nil && !sl.cur.spec.same(swaps[i].spec):
			c.proxies[2] = append(c.proxies[2], sl.address())
		default:
			c.proxyKept++
		}
	}
	for _, sl := range curSlots {
		if !now[sl] && sl.cur.spec.origin != "" {
			c.proxies[1] = append(c.proxies[1], sl.address())
		}
	}
	for i := range 3 {
		slices.Sort(c.sources[i])
		slices.Sort(c.proxies[i])
	}
	return c
}

// log logs c: one line.
func (c changes) log(log *slog.Logger, attrs []any) {
	if c.sourcesKept == c.sourcesN && c.proxyKept == c.proxiesN && len(c.sources[1])+len(c.proxies[1]) == 0 {
		log.Info("config file reloaded: nothing changed", append(attrs, slog.Int("sources", c.sourcesN), slog.Int("proxies", c.proxiesN))...)
		return
	}
	for i, what := range []string{"added", "removed", "changed"} {
		if len(c.sources[i]) > 0 {
			attrs = append(attrs, slog.Any("sources_"+what, c.sources[i]))
		}
	}
	attrs = append(attrs, slog.Int("sources_unchanged", c.sourcesKept))
	for i, what := range []string{"added", "removed", "changed"} {
		if len(c.proxies[i]) > 0 {
			attrs = append(attrs, slog.Any("proxies_"+what, c.proxies[i]))
		}
	}
	if c.proxiesN > 0 {
		attrs = append(attrs, slog.Int("proxies_unchanged", c.proxyKept))
	}
	log.Info("config file reloaded", attrs...)
}

// identity returns what tells the source's client and the source apart
// from others: client, every field of the source but the name and the
// token request (audience, scopes, organization), so that the sources of
// one client share a pool; outside, what it names outside the file: the
// value of the variable named in "client_secret_env" (by its SHA-256) and
// the command's CA (--ca-file, M2MTOKEN_CA_FILE) if it names none; and
// request, its token request. A reload keeps a source whose client,
// outside and request are the same. (The files a source names are
// followed by the library, not compared here.)
func (fs *fileSource) identity(getenv func(string) string) (client, outside, request string) {
	c := *fs
	c.Name, c.Audience, c.Scopes, c.Organization = "", "", nil, ""
	if c.Cache == "" || c.Cache == "none" {
		c.Cache = "memory" // the default, and its old name
	}
	b, _ := json.Marshal(c)
	var o struct {
		Secret []byte `json:"secret,omitempty"`
		CA     string `json:"ca,omitempty"`
	}
	if fs.ClientSecretEnv != "" {
		d := sha256.Sum256([]byte(getenv(fs.ClientSecretEnv)))
		o.Secret = d[:]
	}
	if fs.CAFile == "" {
		o.CA = getenv(settings.CAFile)
	}
	ob, _ := json.Marshal(o)
	// The scopes are a set, as the library's token request takes them.
	scopes := slices.Compact(slices.Sorted(slices.Values(fs.Scopes)))
	r, _ := json.Marshal([]any{fs.Audience, scopes, fs.Organization})
	return string(b), string(ob), string(r)
}
