// Auth0's fine-grained M2M token quotas: reading them from every answer,
// and not spending requests on a quota that is used up.

package m2mtoken

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/m2mtoken/m2mtoken/internal/wire"
)

// Quotas is what Auth0's quota headers (Auth0-Client-Quota-Limit and
// Auth0-Organization-Quota-Limit) said in the last answer that had them.
// They count the tokens issued to this client (and to its organization),
// per bucket; unlike [RateLimit] they are this client's own.
type Quotas struct {
	// Client and Organization are the buckets of each header, in the
	// order Auth0 sent them; nil if the header was absent.
	Client, Organization []Quota
	// At is when the answer carrying them arrived.
	At time.Time
}

// Quota is one bucket of an Auth0 quota, such as "per_hour" or "per_day".
type Quota struct {
	// Bucket is the bucket's name.
	Bucket string
	// Limit is how many tokens the bucket allows per period; Remaining is
	// how many are left in this one.
	Limit, Remaining int64
	// Reset is when the bucket refills, in the local clock.
	Reset time.Time
}

// QuotaError is returned when Auth0 refused a token because a quota is
// used up (a 429 with a bucket at 0, or its "quota exceeded" answer). No
// token request is sent for this source until Reset: fetches fail at once
// with this error, and a background refresh waits for the reset while the
// current token lasts. errors.As finds the 429's *TokenError in it.
type QuotaError struct {
	// Scope is "client" or "organization": whose quota is used up.
	Scope string
	// Quota is the exhausted bucket; its Bucket is empty when Auth0 named
	// none, and its Reset is when requests may succeed again.
	Quota Quota
	// Err is the token endpoint's 429.
	Err *TokenError
}

// Error says which bucket is empty, when it refills, and what the endpoint
// answered.
func (e *QuotaError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "m2mtoken: Auth0 %s quota exhausted", e.Scope)
	if e.Quota.Bucket != "" {
		fmt.Fprintf(&b, ": bucket %s allows %d tokens and has none left", e.Quota.Bucket, e.Quota.Limit)
	}
	fmt.Fprintf(&b, "; it resets at %s: no token request is sent before then", e.Quota.Reset.UTC().Format(time.RFC3339))
	if e.Err != nil {
		b.WriteString(" (")
		b.WriteString(strings.TrimPrefix(e.Err.Error(), "m2mtoken: "))
		b.WriteString(")")
	}
	return b.String()
}

// Unwrap returns the 429's *TokenError.
func (e *QuotaError) Unwrap() error {
	if e.Err == nil {
		return nil
	}
	return e.Err
}

// quotaFallback is how long requests stop after a "quota exceeded" answer
// that says neither which bucket nor when it resets.
const quotaFallback = time.Minute

// readLimits records the rate-limit and quota headers of one answer to s
// in Stats and tells the observer. It returns the answer's rate limit and
// quotas (nil if none).
func (c *client) readLimits(h http.Header, status int, now time.Time, s *TokenSource) (*RateLimit, *Quotas) {
	var rl *RateLimit
	if r, ok := wire.ParseRateLimit(h, now); ok {
		rl = &RateLimit{Limit: r.Limit, Remaining: r.Remaining, Reset: r.Reset, At: now}
		c.rateLimit.Store(rl)
	}
	var q *Quotas
	if cq, oq, ok := wire.ParseQuotas(h); ok {
		q = &Quotas{Client: quotasAt(cq, now), Organization: quotasAt(oq, now), At: now}
		c.quotas.Store(q)
	}
	c.obs.limits(s, status, rl, q)
	return rl, q
}

func quotasAt(ws []wire.Quota, now time.Time) []Quota {
	if ws == nil {
		return nil
	}
	out := make([]Quota, len(ws))
	for i, w := range ws {
		out[i] = Quota{Bucket: w.Bucket, Limit: w.Limit, Remaining: w.Remaining, Reset: now.Add(w.ResetIn)}
	}
	return out
}

// quotaExhausted reports whether te, a 429, says a quota is used up: a
// bucket at 0 in its quota headers, or Auth0's "quota exceeded" answer.
// It names the bucket that resets last, since no request can succeed
// before then.
func quotaExhausted(te *TokenError, q *Quotas, now time.Time) *QuotaError {
	if te.StatusCode != http.StatusTooManyRequests {
		return nil
	}
	var qe *QuotaError
	if q != nil {
		for _, sc := range []struct {
			scope   string
			buckets []Quota
		}{{"client", q.Client}, {"organization", q.Organization}} {
			for _, b := range sc.buckets {
				if b.Remaining == 0 && (qe == nil || b.Reset.After(qe.Quota.Reset)) {
					qe = &QuotaError{Scope: sc.scope, Quota: b, Err: te}
				}
			}
		}
	}
	desc := strings.ToLower(te.Description)
	if qe == nil && strings.Contains(desc, "quota") {
		scope := "client"
		if strings.Contains(desc, "organization") {
			scope = "organization"
		}
		wait := te.RetryAfter
		if wait <= 0 {
			wait = quotaFallback
		}
		qe = &QuotaError{Scope: scope, Quota: Quota{Reset: now.Add(wait)}, Err: te}
	}
	if qe != nil {
		// Waiting until exactly the reset second races the refill: add one.
		if !qe.Quota.Reset.After(now) {
			qe.Quota.Reset = now
		}
		qe.Quota.Reset = qe.Quota.Reset.Add(time.Second)
		te.RetryAfter = qe.Quota.Reset.Sub(now)
	}
	return qe
}

// blockQuota stops token requests until qe's bucket resets: every token's
// for a client quota, the organization's tokens' for an organization
// quota.
func (c *client) blockQuota(qe *QuotaError, org string) {
	if qe.Scope == "organization" && org != "" {
		c.orgMu.Lock()
		if c.orgBlocks == nil {
			c.orgBlocks = map[string]*QuotaError{}
		}
		c.orgBlocks[org] = qe
		c.orgMu.Unlock()
	} else {
		c.quotaBlock.Store(qe)
	}
	c.log.Warn("Auth0 quota exhausted; no token request until it resets",
		slog.String("scope", qe.Scope), slog.String("bucket", qe.Quota.Bucket), slog.String("organization", org),
		slog.Int64("quota", qe.Quota.Limit), slog.Time("reset", qe.Quota.Reset))
}

// quotaBlocked returns the error of an exhausted quota that stops a token
// request for org (the client's, or org's), or nil.
func (c *client) quotaBlocked(org string) *QuotaError {
	now := c.clock.Now()
	if qe := c.quotaBlock.Load(); qe != nil {
		if !reached(now, qe.Quota.Reset) {
			return qe
		}
		c.quotaBlock.CompareAndSwap(qe, nil)
	}
	if org == "" {
		return nil
	}
	c.orgMu.Lock()
	defer c.orgMu.Unlock()
	qe := c.orgBlocks[org]
	if qe == nil {
		return nil
	}
	if reached(now, qe.Quota.Reset) {
		delete(c.orgBlocks, org)
		return nil
	}
	return qe
}

// quotaWait is how long a background refresh that failed with err at now
// waits for a quota to reset; 0 if err is not about a quota.
func quotaWait(err error, now time.Time) time.Duration {
	var qe *QuotaError
	if !errors.As(err, &qe) {
		return 0
	}
	return max(qe.Quota.Reset.Sub(now), 0)
}
