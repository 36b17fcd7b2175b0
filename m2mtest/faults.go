// Fault injection and Auth0-style rate limiting.

package m2mtest

import (
	"io"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// Fault is one injected answer to a token request.
type Fault struct {
	// Status, if not 0, answers with this status and an Auth0-style error
	// body. 429 also carries Retry-After (if RetryAfter is set) and
	// X-RateLimit-Limit/Remaining/Reset.
	Status     int
	RetryAfter time.Duration
	// Malformed answers 200 with an HTML page.
	Malformed bool
	// Truncated answers 200 with half of a token response.
	Truncated bool
	// Drop closes the connection without answering.
	Drop bool
	// Latency delays this answer (on top of the server's latency).
	Latency time.Duration
}

// DefaultLifetime is the lifetime of issued tokens unless

// FailNext makes the next n token requests get fault f (after any faults
// queued before).
func (s *Server) FailNext(n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; i < n; i++ {
		s.queue = append(s.queue, f)
	}
}

// SetRandomFaults makes each token request, with probability rate, get one
// of faults chosen at random. Rate 0 turns it off.
func (s *Server) SetRandomFaults(rate float64, faults ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faultRate, s.faultPool = rate, slices.Clone(faults)
}

// SetRateLimit rate-limits token requests like an Auth0 tenant: a token
// bucket of burst tokens refilled at perSecond. Every answer then carries
// X-RateLimit-Limit/Remaining/Reset; an empty bucket answers 429. burst 0
// turns it off.
func (s *Server) SetRateLimit(burst int, perSecond float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if burst <= 0 {
		s.bucket = nil
		return
	}
	s.bucket = &bucket{burst: float64(burst), rate: perSecond, tokens: float64(burst), last: s.now()}
}

type bucket struct {
	burst, rate, tokens float64
	last                time.Time
}

func (b *bucket) take(now time.Time) (ok bool, remaining int, reset time.Time) {
	b.tokens = math.Min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		ok = true
	}
	missing := b.burst - b.tokens
	if b.rate > 0 {
		reset = now.Add(time.Duration(missing / b.rate * float64(time.Second)))
	} else {
		reset = now.Add(time.Hour)
	}
	return ok, int(b.tokens), reset
}

// nextFault picks the queued or random fault for this request. s.mu is held.
func (s *Server) nextFault() (Fault, bool) {
	if len(s.queue) > 0 {
		f := s.queue[0]
		s.queue = s.queue[1:]
		return f, true
	}
	if s.faultRate > 0 && len(s.faultPool) > 0 && mrand.Float64() < s.faultRate {
		return s.faultPool[mrand.IntN(len(s.faultPool))], true
	}
	return Fault{}, false
}

func sleep(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

// inject answers with f. It reports false for a latency-only fault.
func (s *Server) inject(w http.ResponseWriter, f Fault) bool {
	switch {
	case f.Drop:
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return true
			}
		}
		panic(http.ErrAbortHandler)
	case f.Malformed:
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<html><body><h1>502 Bad Gateway</h1></body></html>")
	case f.Truncated:
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOi`)
	case f.Status != 0:
		if f.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(f.RetryAfter.Seconds()))))
		}
		if f.Status == http.StatusTooManyRequests {
			now := s.now()
			w.Header().Set("X-RateLimit-Limit", "30")
			w.Header().Set("X-RateLimit-Remaining", "0")
			w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(now.Add(max(f.RetryAfter, time.Second)).Unix(), 10))
			writeError(w, f.Status, "too_many_requests", "Rate limit exceeded.", "")
			return true
		}
		writeError(w, f.Status, "server_error", http.StatusText(f.Status), "")
	default:
		return false
	}
	return true
}
