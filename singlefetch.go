// The one fetch a token has in flight at a time: callers that find no
// usable token share it. It is singleflight with one key and a typed
// result, holding nothing between fetches, so that an idle token costs no
// map.

package m2mtoken

import "sync"

// fetched is what a fetch hands each of its waiters: the token it
// installed (or found fresh), the flight (nil without an observer) so that
// a waiter can name the fetch it waited for, and the fetch's error.
type fetched struct {
	h   *heldToken
	fl  *flight
	err error
}

// fetchGroup runs one fetch at a time; callers that come while it runs
// get its result. The zero value is ready to use.
type fetchGroup struct {
	mu      sync.Mutex
	waiters []chan fetched // nil when no fetch is in flight
}

// join runs fetch unless one is in flight, and returns a channel that
// receives the result of the fetch it joined or started.
func (g *fetchGroup) join(fetch func() fetched) <-chan fetched {
	ch := make(chan fetched, 1)
	g.mu.Lock()
	if g.waiters != nil {
		g.waiters = append(g.waiters, ch)
		g.mu.Unlock()
		return ch
	}
	g.waiters = []chan fetched{ch}
	g.mu.Unlock()
	go func() {
		r := fetch()
		g.mu.Lock()
		waiters := g.waiters
		g.waiters = nil
		g.mu.Unlock()
		for _, w := range waiters {
			w <- r
		}
	}()
	return ch
}
