// What the demo's two columns send their requests through: the token
// requests each makes, counted, and the transport x/oauth2's calls share
// with the library's.

package main

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/m2mtoken/m2mtoken"
)

// tokenRequests records the token requests of one run: the library's
// through its Observer, x/oauth2's through the transport it sends them
// with.
type tokenRequests struct {
	mu    sync.Mutex
	spans []span
}

func (c *tokenRequests) add(start time.Time) {
	c.mu.Lock()
	c.spans = append(c.spans, span{start, time.Now()})
	c.mu.Unlock()
}

// spanStart keys a token request's start in its attempt's context.
type spanStart struct{}

// observer records the library's token requests: each attempt, from its
// start to its answer.
func (c *tokenRequests) observer() *m2mtoken.Observer {
	return &m2mtoken.Observer{
		AttemptStart: func(ctx context.Context, _ m2mtoken.AttemptStartInfo) context.Context {
			return context.WithValue(ctx, spanStart{}, time.Now())
		},
		AttemptDone: func(ctx context.Context, _ m2mtoken.AttemptDoneInfo) {
			if start, ok := ctx.Value(spanStart{}).(time.Time); ok {
				c.add(start)
			}
		},
	}
}

// countingTransport records the token requests to tokenURL it sends
// through base.
type countingTransport struct {
	base     http.RoundTripper
	tokenURL string
	reqs     *tokenRequests
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.String() != c.tokenURL {
		return c.base.RoundTrip(r)
	}
	// The span ends when the headers arrive: the local endpoint's delay
	// comes before them, and its body is small.
	start := time.Now()
	resp, err := c.base.RoundTrip(r)
	c.reqs.add(start)
	return resp, err
}

// libraryBase is the transport under src.Client(): the library's clone of
// http.DefaultTransport, tuned for many concurrent calls to one API (and
// trusting Config.CAFile). The x/oauth2 run sends its API calls and token
// requests through one of its own, so that the two runs differ only in
// how they get tokens.
func libraryBase(src *m2mtoken.TokenSource) (http.RoundTripper, error) {
	if t, ok := src.Client().Transport.(*m2mtoken.Transport); ok && t.Base != nil {
		return t.Base, nil
	}
	return nil, errors.New("the library's client has no base transport to compare x/oauth2 on")
}
