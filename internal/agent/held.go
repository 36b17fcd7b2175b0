// The library sources the agent holds, and when it closes them. A reload
// removes or replaces sources while requests for them are in flight, and
// a pool hands equal requests one *m2mtoken.TokenSource, so that one
// library source may serve several of the agent's sources, some of them
// gone: a library source is closed once no source of the agent uses it
// and no request is in flight through it, and a pool once it has no
// source left.

package agent

import (
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/m2mtoken/m2mtoken"
)

// held is one library source of the agent.
type held struct {
	src  *m2mtoken.TokenSource
	pool *heldPool // nil for a source of its own (m2mtoken.New)

	inflight atomic.Int64 // requests served through it now
	retired  atomic.Bool  // users is 0: the last request to end closes it

	mu      sync.Mutex
	users   int  // the agent's sources that use it, current or being made
	closing bool // it is closed, or being closed: nothing may use it again
	closed  chan struct{}
}

// heldPool is the pool of one client's sources. It is closed with its
// last source.
type heldPool struct {
	pool *m2mtoken.Pool

	mu     sync.Mutex
	tokens int // its held sources not yet closed, and those being made
	closed bool
}

// use adds a user to h, unless h is closing: then it returns false, and
// the caller waits for h.closed before it asks the pool again (which then
// makes a new source).
func (h *held) use() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing {
		return false
	}
	h.users++
	h.retired.Store(false)
	return true
}

// unuse removes a user. The caller has made h unreachable for that user's
// requests first (under the agent's lock), so that every request that
// found h through it is counted in inflight.
func (h *held) unuse(a *Agent) {
	h.mu.Lock()
	h.users--
	if h.users == 0 {
		h.retired.Store(true)
	}
	h.mu.Unlock()
	h.closeIfUnused(a)
}

// acquire counts a request through h, which the caller found in the
// agent's sources under the agent's read lock (so h has a user).
func (h *held) acquire() { h.inflight.Add(1) }

// release ends a request through h, and closes h if it was the last one
// of a source that is gone.
func (h *held) release(a *Agent) {
	if h.inflight.Add(-1) == 0 && h.retired.Load() {
		h.closeIfUnused(a)
	}
}

// closeIfUnused closes h if nothing uses it and no request is in flight
// through it, once.
func (h *held) closeIfUnused(a *Agent) {
	h.mu.Lock()
	if h.closing || h.users > 0 || h.inflight.Load() > 0 {
		h.mu.Unlock()
		return
	}
	h.closing = true
	h.mu.Unlock()
	h.close(a)
}

// close closes the library source, and its pool if it was the pool's
// last.
func (h *held) close(a *Agent) {
	h.src.Close()
	a.hmu.Lock()
	if a.helds[h.src] == h {
		delete(a.helds, h.src)
	}
	a.hmu.Unlock()
	if h.pool != nil {
		h.pool.leave()
	}
	close(h.closed)
}

// join reserves a place in hp for a new source; false if hp is closed.
func (hp *heldPool) join() bool {
	hp.mu.Lock()
	defer hp.mu.Unlock()
	if hp.closed {
		return false
	}
	hp.tokens++
	return true
}

// hold returns the library source of spec, used once more: a new one,
// or, for a source of a client the agent has a pool for, the pool's
// source of the request (shared with the agent's sources of an equal
// request). Sources of one client (Source.Client) are one pool, a pool of
// one while alone, so that a source a reload adds joins its client's pool.
func (a *Agent) hold(spec Source) (*held, error) {
	cfg := spec.Config
	cfg.Logger = a.log.With(slog.String("source", spec.Name))
	cfg.Observer = observe(cfg.Observer, a.sourcesOf)
	if spec.Client == "" {
		src, err := m2mtoken.New(cfg)
		if err != nil {
			return nil, a.sourceError(spec, err)
		}
		return a.newHeld(src, nil), nil
	}
	req := m2mtoken.TokenRequest{Audience: cfg.Audience, Scopes: cfg.Scopes, Organization: cfg.Organization}
	client := spec.pool
	if client == "" {
		client = spec.Client
	}
	for {
		a.hmu.Lock()
		hp := a.pools[client]
		a.hmu.Unlock()
		if hp == nil || !hp.join() {
			// The pool names its client, not its sources: a reload may
			// add and remove them, and its tokens name their request.
			cfg.Logger = a.log.With(slog.String("client", cfg.ClientID))
			// The pool's requests are the config file's, made here, never
			// a caller's: the bound on new tokens, which would refuse the
			// first fetches of a file with many sources, has nothing to
			// guard against; and the bound on tokens would drop a source
			// the agent serves (at 10,000 sources, a reload that adds one
			// before the source it replaces is closed).
			cfg.NewTokenRate, cfg.MaxTokens = -1, math.MaxInt
			p, err := m2mtoken.NewPool(cfg)
			if err != nil {
				return nil, a.sourceError(spec, err)
			}
			hp = &heldPool{pool: p, tokens: 1}
			a.hmu.Lock()
			a.pools[client] = hp
			a.hmu.Unlock()
		}
		src, err := hp.pool.Source(req)
		if err != nil {
			hp.leave()
			return nil, a.sourceError(spec, err)
		}
		a.hmu.Lock()
		h := a.helds[src]
		a.hmu.Unlock()
		if h == nil {
			return a.newHeld(src, hp), nil
		}
		// Another source of the agent has this request: share its
		// library source, whose place in the pool is counted already.
		hp.leave()
		if h.use() {
			return h, nil
		}
		// It is being closed (a source a reload removed): once it is, the
		// pool makes a new one.
		<-h.closed
	}
}

// leave gives back a place in hp (one join reserved, or a source's that
// is closed), closing the pool if it was the last.
func (hp *heldPool) leave() {
	hp.mu.Lock()
	hp.tokens--
	last := hp.tokens == 0 && !hp.closed
	hp.closed = hp.closed || last
	hp.mu.Unlock()
	if last {
		hp.pool.Close()
	}
}

func (a *Agent) newHeld(src *m2mtoken.TokenSource, hp *heldPool) *held {
	h := &held{src: src, pool: hp, users: 1, closed: make(chan struct{})}
	a.hmu.Lock()
	a.helds[src] = h
	a.hmu.Unlock()
	return h
}

// sourceError is the library's error about spec, in the user's words: the
// Config's FieldNames name the fields, and the Origin the source.
func (a *Agent) sourceError(spec Source, err error) error {
	return fmt.Errorf("%s: %s", origin(spec), strings.TrimPrefix(err.Error(), "m2mtoken: "))
}

// closeSources closes every library source and pool the agent holds, in
// use or not: when it stops, or when New fails.
func (a *Agent) closeSources() {
	a.hmu.Lock()
	var hs []*held
	for _, h := range a.helds {
		hs = append(hs, h)
	}
	a.hmu.Unlock()
	for _, h := range hs {
		h.mu.Lock()
		closing := h.closing
		h.closing = true
		h.mu.Unlock()
		if !closing {
			h.close(a)
		}
	}
}
