// The one fetch a token has in flight at a time: callers that find no
// usable token share it. It is singleflight with one key, holding nothing
// between fetches, so that an idle token costs no map.

package m2mtoken

import (
	"sync"

	"golang.org/x/sync/singleflight"
)

// fetchGroup runs one function at a time; callers that come while it runs
// get its result. The zero value is ready to use.
type fetchGroup struct {
	mu   sync.Mutex
	call *fetchCall
}

type fetchCall struct {
	waiters []chan singleflight.Result
	val     any
	err     error
}

// DoChan runs fn unless a call is in flight, and returns a channel that
// receives the result of the call it joined or started. The key is
// ignored: a token has one fetch.
func (g *fetchGroup) DoChan(_ string, fn func() (any, error)) <-chan singleflight.Result {
	ch := make(chan singleflight.Result, 1)
	g.mu.Lock()
	if c := g.call; c != nil {
		c.waiters = append(c.waiters, ch)
		g.mu.Unlock()
		return ch
	}
	c := &fetchCall{waiters: []chan singleflight.Result{ch}}
	g.call = c
	g.mu.Unlock()
	go func() {
		c.val, c.err = fn()
		g.mu.Lock()
		g.call = nil
		waiters := c.waiters
		g.mu.Unlock()
		for i, w := range waiters {
			w <- singleflight.Result{Val: c.val, Err: c.err, Shared: len(waiters) > 1 || i > 0}
		}
	}()
	return ch
}
