// Fault injection and Auth0-style rate limiting.

package m2mtest

import (
	"io"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
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

// Quota is one bucket of a fine-grained M2M token quota, as Auth0 applies
// them per client and per organization: at most Limit tokens issued per
// Period.
type Quota struct {
	// Bucket names the bucket in the quota headers, such as "per_hour".
	Bucket string
	Limit  int
	// Period is the bucket's length; zero means one hour for "per_hour"
	// and one day for "per_day" (and for any other name).
	Period time.Duration
}

type quotaBucket struct {
	Quota
	used  int
	reset time.Time // zero until the period's first token
}

// SetClientQuota gives clientID Auth0-like token quotas (none replaces
// them). Every answer to that client, once it has authenticated, carries
// Auth0-Client-Quota-Limit (b=per_hour;q=10;r=7;t=3540,b=per_day;...).
// A token request that would exceed any bucket gets 429
// too_many_requests "Client quota exceeded" with Retry-After, and counts
// nothing. A bucket's period starts with its first token.
func (s *Server) SetClientQuota(clientID string, buckets ...Quota) {
	s.setQuota("client:"+clientID, buckets)
}

// SetOrganizationQuota does the same for the tokens issued for an
// organization (requests with organization=org), with
// Auth0-Organization-Quota-Limit and "Organization quota exceeded".
func (s *Server) SetOrganizationQuota(org string, buckets ...Quota) {
	s.setQuota("org:"+org, buckets)
}

func (s *Server) setQuota(key string, buckets []Quota) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(buckets) == 0 {
		delete(s.quotas, key)
		return
	}
	bs := make([]*quotaBucket, len(buckets))
	for i, b := range buckets {
		if b.Period <= 0 {
			b.Period = 24 * time.Hour
			if b.Bucket == "per_hour" {
				b.Period = time.Hour
			}
		}
		bs[i] = &quotaBucket{Quota: b}
	}
	s.quotas[key] = bs
}

// SetClock makes the server read the time from now instead of time.Now:
// for tests that step a fake clock through quota periods. It also dates
// the tokens it issues.
func (s *Server) SetClock(now func() time.Time) {
	if now == nil {
		now = time.Now
	}
	s.clock.Store(&now)
}

// chargeQuota sets the quota headers of an answer to clientID (and org,
// if any). With take, it counts one token against every bucket, or, if
// any bucket is used up, counts nothing and returns the scope exceeded
// ("Client" or "Organization") and when the last such bucket resets.
func (s *Server) chargeQuota(h http.Header, clientID, org string, take bool) (exceeded string, retry time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	scopes := []struct {
		name, header string
		buckets      []*quotaBucket
	}{{"Client", "Auth0-Client-Quota-Limit", s.quotas["client:"+clientID]}}
	if org != "" {
		scopes = append(scopes, struct {
			name, header string
			buckets      []*quotaBucket
		}{"Organization", "Auth0-Organization-Quota-Limit", s.quotas["org:"+org]})
	}
	for _, sc := range scopes {
		for _, b := range sc.buckets {
			if !b.reset.IsZero() && !now.Before(b.reset) {
				b.used, b.reset = 0, time.Time{}
			}
			if take && b.used >= b.Limit {
				if exceeded == "" {
					exceeded = sc.name
				}
				retry = max(retry, b.reset.Sub(now))
			}
		}
	}
	if take && exceeded == "" {
		for _, sc := range scopes {
			for _, b := range sc.buckets {
				if b.reset.IsZero() {
					b.reset = now.Add(b.Period)
				}
				b.used++
			}
		}
	}
	for _, sc := range scopes {
		if len(sc.buckets) == 0 {
			continue
		}
		parts := make([]string, len(sc.buckets))
		for i, b := range sc.buckets {
			left := b.Period
			if !b.reset.IsZero() {
				left = b.reset.Sub(now)
			}
			parts[i] = "b=" + b.Bucket + ";q=" + strconv.Itoa(b.Limit) + ";r=" + strconv.Itoa(max(b.Limit-b.used, 0)) +
				";t=" + strconv.FormatInt(int64(math.Ceil(left.Seconds())), 10)
		}
		h.Set(sc.header, strings.Join(parts, ","))
	}
	return exceeded, retry
}
