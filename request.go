// The token request: the retry loop with its backoff, one attempt, the
// form and client authentication, and reading what came back.

package m2mtoken

import (
	"bytes"
	"context"
	cryptorand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/oauth2"

	"github.com/m2mtoken/m2mtoken/internal/jwt"
	"github.com/m2mtoken/m2mtoken/internal/wire"
)

// request asks the endpoint for a token, retrying temporary failures with
// exponential backoff and full jitter, within ctx and Config.MaxAttempts.
// The error of a fetch that tried more than once says how often and for
// how long.
//
// A failed fetch is one warning, however many attempts it made: each
// retry is a debug line, so that an endpoint that is down for an hour
// logs a line per fetch, not per attempt. A background refresh's failure
// is warned of by the refresh itself (with the token it goes on serving),
// so its own line is a debug line too.
//
// Each attempt takes the credential as it is then (credential.go): a
// followed file read again, a new assertion. A refusal of a credential
// that changed and has not been accepted yet is asked again at once with
// the one before it. With a client certificate, each attempt names the
// certificate it presents (tokenTransport); a token bound to another
// certificate than the one presented is refused, and one bound to a
// certificate replaced while it was under way is asked for again with the
// new one. It returns the token, the credential that earned it, and the
// certificate it was fetched with (nil without one).
func (s *TokenSource) request(ctx context.Context, refresh bool) (*Entry, *credValue, *certValue, error) {
	failed := slog.LevelWarn
	if refresh {
		failed = slog.LevelDebug
	}
	nonceRetries, nonceRetry := 0, false
	start := s.c.clock.Now()
	final := func(te *TokenError, attempts int) error {
		if attempts < 2 {
			return te
		}
		c := *te
		c.Attempts, c.Elapsed = attempts, s.c.clock.Now().Sub(start)
		return &c
	}
	var fallback *credValue // the previous credential, to try once after a refusal
	reconnected := false    // asked again over a new connection, for a certificate
	for attempt := 0; ; attempt++ {
		v, cerr := fallback, error(nil)
		if v == nil {
			v, cerr = s.c.cred.current(ctx, s.log)
		}
		if cerr != nil {
			// No credential to send (an assertion that cannot be had or
			// has expired): nothing is sent, and it is tried again as a
			// request that got no answer is.
			te := &TokenError{URL: s.c.tokenURL, Temporary: true, err: cerr, unsent: true}
			s.wait.lastErr.Store(te)
			next := s.next(ctx, attempt, te, nonceRetries)
			if next.retry {
				s.log.Debug("no client assertion to send; trying again", slog.Any("error", cerr), slog.Duration("delay", next.delay))
				if err := s.c.clock.Sleep(ctx, next.delay); err == nil {
					continue
				}
			}
			s.log.Log(ctx, failed, "token request not sent", slog.Any("error", te), slog.Int("attempts", attempt+1))
			return nil, nil, nil, final(te, attempt+1)
		}
		probe, held := s.c.waitRate(ctx, &s.wait.lastErr, s.log)
		if held != nil {
			return nil, nil, nil, final(held, attempt)
		}
		s.log.Debug("requesting token", slog.Int("attempt", attempt+1))
		a := AttemptStartInfo{Source: s, Attempt: attempt + 1, NonceRetry: nonceRetry}
		actx, start := s.c.obs.attemptStart(ctx, s, a)
		s.wait.sending.Store(&sentAttempt{n: attempt + 1, at: s.c.clock.Now()})
		cv := s.c.cert.now()
		ce, err := s.attempt(actx, probe, v, cv)
		s.wait.sending.Store(nil)
		if err == nil && cv != nil {
			if x5t := certBinding(ce); x5t != "" && x5t != cv.thumb {
				err = s.c.boundElsewhere(x5t, cv)
			}
		}
		var te *TokenError
		errors.As(err, &te)
		prev := (*credValue)(nil)
		if te != nil && badCredentials(te) {
			if fallback == nil && ctx.Err() == nil {
				prev = s.c.cred.previous(v)
			}
			if since, young := s.c.cred.young(); prev == nil && young {
				// A credential that changed moments ago may not have
				// reached every server of the issuer yet: its refusal is
				// asked again, with backoff, not held.
				te.Temporary = true
				te.Hint = "the credential changed " + since.Round(time.Second).String() + " ago, and a server may take a while to take up a rotation (Auth0: up to thirty seconds): it is asked again; " + te.Hint
			}
		}
		next := s.next(ctx, attempt, err, nonceRetries)
		if prev != nil {
			next = nextAttempt{retry: true, window: next.window}
		}
		s.c.obs.attemptDone(actx, s, a, start, err, next.nonce, next)
		nonceRetry = false
		if err == nil && cv != nil && !reconnected {
			if now := s.c.cert.now(); now != cv && s.c.boundTo(ce, cv) != "" {
				// Bound to a certificate replaced while the request was
				// under way: ask again with the new one.
				reconnected = true
				attempt--
				s.log.Debug("the token is bound to the client certificate before; asking again with the new one")
				continue
			}
		}
		if err == nil {
			s.log.Debug("token received", slog.String("token", Fingerprint(ce.AccessToken)), slog.Time("expiry", ce.Expiry))
			if fallback != nil {
				s.log.Warn("the credential in its file was refused, and the one before it was accepted: the server has not taken up the rotation yet, or the new credential is wrong; the next token request tries the new one again",
					slog.String("setting", s.c.cred.setting()))
			} else {
				s.c.cred.accepted(v)
			}
			return ce, v, cv, nil
		}
		if qe := (*QuotaError)(nil); errors.As(err, &qe) {
			// Retrying cannot help before the bucket refills.
			s.c.blockQuota(qe, s.req.Organization)
			return nil, nil, nil, qe
		}
		if prev != nil {
			// A rotation the server has not taken up yet (Auth0: up to
			// thirty seconds): ask again at once with the credential
			// before it. Not a failed attempt.
			fallback = prev
			attempt--
			s.log.Debug("the new credential was refused; asking again with the one before it", slog.String("setting", s.c.cred.setting()))
			continue
		}
		if fallback != nil {
			// Both were refused: the refusal is the new credential's.
			v, fallback = s.c.cred.last(), nil
		}
		if next.nonce {
			// DPoP: the server wants its nonce in the proof. Ask again
			// at once; this is the protocol, not a failed attempt.
			nonceRetries++
			attempt--
			nonceRetry = true
			s.log.Debug("token endpoint asked for a DPoP nonce; asking again with it")
			continue
		}
		if s.c.nonceChallenge(te) {
			// Asked again and again: now it is a failure.
			s.stats.failures.Add(1)
			s.wait.lastErr.Store(te)
		}
		switch next.stop {
		case stopCanceled:
			// The fetch's own deadline or Close, not the endpoint: report
			// what the endpoint said last.
			s.log.Log(ctx, failed, "token request failed", slog.Any("error", err))
			return nil, nil, nil, final(te, attempt+1)
		case stopFinal:
			s.log.Log(ctx, failed, "token request failed", slog.Any("error", err), slog.Int("attempts", attempt+1), slog.Bool("temporary", te.Temporary))
			err := final(te, attempt+1)
			if !te.Temporary {
				s.holdError(err, v)
			}
			return nil, nil, nil, err
		case stopNoTime:
			s.log.Log(ctx, failed, "token request failed; no time left to retry", slog.Any("error", err), slog.Duration("wanted_delay", next.delay))
			return nil, nil, nil, final(te, attempt+1)
		}
		s.log.Debug("token request failed; retrying", slog.Any("error", err), slog.Int("attempt", attempt+1),
			slog.Int("max_attempts", s.c.cfg.MaxAttempts), slog.Duration("delay", next.delay),
			slog.Duration("retrying_for_at_most", next.window))
		if err := s.c.clock.Sleep(ctx, next.delay); err != nil {
			return nil, nil, nil, final(te, attempt+1)
		}
	}
}

// nextAttempt is what follows an attempt of a fetch: nothing (stop says
// why, after a failure), the same request at once with the DPoP nonce the
// endpoint asked for, or another attempt after delay.
type nextAttempt struct {
	stop  stopReason
	nonce bool
	retry bool
	// delay is the wait before the next attempt: the backoff, or the
	// endpoint's Retry-After if longer; with stopNoTime, the wait that
	// the fetch's deadline leaves no time for.
	delay time.Duration
	// window is the longest the fetch can go on retrying: retryWindow, or
	// delay if the endpoint asked for a longer wait.
	window time.Duration
}

// stopReason is why no attempt follows a failed one.
type stopReason int

const (
	stopNone     stopReason = iota // a token, a used-up quota, or an attempt follows
	stopCanceled                   // the fetch's context ended
	stopFinal                      // retrying cannot help, or no attempt is left
	stopNoTime                     // the backoff would pass the fetch's deadline
)

// next decides what follows attempt n (from 0) of a fetch, which ended
// with err, after nonceRetries requests repeated with a DPoP nonce.
func (s *TokenSource) next(ctx context.Context, n int, err error, nonceRetries int) nextAttempt {
	var te *TokenError
	if err == nil || errors.As(err, new(*QuotaError)) || !errors.As(err, &te) {
		return nextAttempt{}
	}
	switch {
	case s.c.nonceChallenge(te) && nonceRetries < maxNonceRetries && ctx.Err() == nil:
		return nextAttempt{nonce: true}
	case ctx.Err() != nil:
		return nextAttempt{stop: stopCanceled}
	case !te.Temporary || n+1 >= s.c.cfg.MaxAttempts:
		return nextAttempt{stop: stopFinal}
	}
	delay := max(s.c.backoff(n, false), te.RetryAfter)
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < delay {
		return nextAttempt{stop: stopNoTime, delay: delay}
	}
	return nextAttempt{retry: true, delay: delay, window: max(s.c.retryWindow(ctx, n), delay)}
}

// retryWindow is the longest the fetch goes on retrying after attempt n
// (from 0) failed: the sum of the largest backoffs left, within the
// fetch's deadline. With the defaults it is 31.75 s after the first
// attempt (0.25 + 0.5 + ... + 16 s; full jitter makes it 16 s on average).
func (c *client) retryWindow(ctx context.Context, n int) time.Duration {
	var d time.Duration
	for i := n; i < c.cfg.MaxAttempts-1; i++ {
		d += c.backoffCap(i)
	}
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl))
	}
	return d
}

// backoff returns the delay before retry n (from 0): exponential from
// MinBackoff to MaxBackoff, with full jitter for request retries and equal
// jitter (at least half) between background refreshes.
func (c *client) backoff(n int, equal bool) time.Duration {
	d := float64(c.backoffCap(n))
	if equal {
		return time.Duration(d/2 + d/2*c.rand())
	}
	return time.Duration(d * c.rand())
}

// backoffCap is the longest backoff after the n'th failure (from 0):
// MinBackoff doubled n times, at most MaxBackoff.
func (c *client) backoffCap(n int) time.Duration {
	return time.Duration(min(float64(c.cfg.MinBackoff)*math.Pow(2, float64(min(n, 30))), float64(c.cfg.MaxBackoff)))
}

// sentAttempt is a token request waiting for the endpoint's answer.
type sentAttempt struct {
	n  int // 1 for the first
	at time.Time
}

// attempt sends one token request, presenting cv if not nil. It returns
// the token, or a *TokenError. probe says it goes first after the
// client's rate-limit hold.
func (s *TokenSource) attempt(ctx context.Context, probe bool, v *credValue, cv *certValue) (*Entry, error) {
	ctx, cancel := context.WithTimeout(ctx, s.c.cfg.AttemptTimeout)
	defer cancel()
	if cv != nil {
		ctx = withCert(ctx, cv)
	}
	req, err := s.newRequest(ctx, v)
	if err != nil {
		s.c.rateAnswered(probe, 0, nil, nil, nil, s.c.clock.Now())
		return nil, &TokenError{URL: s.c.tokenURL, err: err}
	}
	start := s.c.clock.Now()
	s.stats.requests.Add(1)
	resp, err := s.c.http.Do(req)
	if err != nil {
		s.c.rateAnswered(probe, 0, nil, nil, nil, s.c.clock.Now())
		s.stats.failures.Add(1)
		te := &TokenError{URL: s.c.tokenURL, Temporary: true, err: stripURL(err)}
		nf := classifyNetwork(err)
		te.Temporary, te.Hint = nf.temporary(), s.c.netHint(nf)
		s.c.scrubbers.forRequest(req, v.secret).tokenError(te)
		s.wait.lastErr.Store(te)
		return nil, te
	}
	body, readErr := io.ReadAll(io.LimitReader(resp.Body, wire.MaxBody+1))
	resp.Body.Close()
	now := s.c.clock.Now()
	rl, quotas := s.c.readLimits(resp.Header, resp.StatusCode, now, s)
	if n, ok := s.c.dpop.sawTokenAnswer(resp.Header); ok {
		s.log.Debug("token endpoint gave a DPoP nonce", slog.String("nonce", Fingerprint(n)))
	}
	ent, terr := s.readAnswer(resp, body, readErr, start, now)
	var qe *QuotaError
	rateErr := terr // a used-up quota is quota.go's to hold, not the rate limit's
	if terr != nil {
		if qe = quotaExhausted(terr, quotas, now); qe != nil {
			rateErr = nil
		}
	}
	// Nothing the endpoint said may repeat the credential onwards.
	if sc := s.c.scrubbers.forRequest(req, v.secret); terr != nil {
		sc.tokenError(terr)
	} else {
		sc.value(ent.Extra)
		// Interned once scrubbed: an interned map is shared, never written.
		ent.Extra = s.c.extras.intern(ent.Extra)
	}
	s.c.rateAnswered(probe, resp.StatusCode, resp.Header, rl, rateErr, now)
	if terr != nil && s.c.nonceChallenge(terr) {
		return nil, terr
	}
	if terr != nil {
		s.stats.failures.Add(1)
		s.wait.lastErr.Store(terr)
		if qe != nil {
			return nil, qe
		}
		return nil, terr
	}
	s.wait.lastErr.Store(nil)
	return ent, nil
}

// stripURL removes the *url.Error wrapping that repeats method and URL.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// newRequest builds a token request, authenticated with the credential v.
func (s *TokenSource) newRequest(ctx context.Context, v *credValue) (*http.Request, error) {
	form := url.Values{"grant_type": {"client_credentials"}}
	switch s.c.cfg.AuthMethod {
	case ClientSecretPost:
		form.Set("client_id", s.c.cfg.ClientID)
		form.Set("client_secret", v.secret)
	case PrivateKeyJWT:
		assertion, err := s.c.assertion(v)
		if err != nil {
			return nil, err
		}
		form.Set("client_id", s.c.cfg.ClientID)
		form.Set("client_assertion_type", assertionJWTBearer)
		form.Set("client_assertion", assertion)
	case ClientAssertion:
		form.Set("client_id", s.c.cfg.ClientID)
		form.Set("client_assertion_type", s.c.cfg.ClientAssertionType)
		form.Set("client_assertion", v.assertion)
	case TLSClientAuth, SelfSignedTLSClientAuth:
		// RFC 8705 section 2: the certificate of the connection
		// authenticates the client, which names itself.
		form.Set("client_id", s.c.cfg.ClientID)
	}
	if s.req.Audience != "" {
		form.Set("audience", s.req.Audience)
	}
	if len(s.req.Scopes) > 0 {
		form.Set("scope", strings.Join(s.req.Scopes, " "))
	}
	if s.req.Organization != "" {
		form.Set("organization", s.req.Organization)
	}
	for k, vs := range s.req.Params {
		form[k] = append([]string(nil), vs...)
	}
	var body []byte
	contentType := "application/x-www-form-urlencoded"
	if s.c.cfg.JSONBody {
		m := make(map[string]any, len(form))
		for k, vs := range form {
			if len(vs) == 1 {
				m[k] = vs[0]
			} else {
				m[k] = vs
			}
		}
		var err error
		if body, err = json.Marshal(m); err != nil {
			return nil, err
		}
		contentType = "application/json"
	} else {
		body = []byte(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.c.tokenURL, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "m2mtoken-go")
	if s.c.cfg.AuthMethod == ClientSecretBasic {
		// RFC 6749 section 2.3.1: form-encode both before Basic encoding.
		req.SetBasicAuth(url.QueryEscape(s.c.cfg.ClientID), url.QueryEscape(v.secret))
	}
	if err := s.c.dpop.addTokenProof(req, s.c.clock.Now()); err != nil {
		return nil, err
	}
	return req, nil
}

// assertion signs a new client assertion (RFC 7523 section 3) with the
// private key v, and a unique jti.
func (c *client) assertion(v *credValue) (string, error) {
	var jti [16]byte
	if _, err := cryptorand.Read(jti[:]); err != nil {
		return "", err
	}
	now := c.clock.Now()
	return jwt.Sign(v.key, v.alg, v.kid, map[string]any{
		"iss": c.cfg.ClientID,
		"sub": c.cfg.ClientID,
		"aud": c.cfg.AssertionAudience,
		"iat": now.Unix(),
		"exp": now.Add(c.cfg.AssertionLifetime).Unix(),
		"jti": hex.EncodeToString(jti[:]),
	})
}

// readAnswer turns one answer into a token or a *TokenError.
func (s *TokenSource) readAnswer(resp *http.Response, body []byte, readErr error, start, now time.Time) (*Entry, *TokenError) {
	te := &TokenError{URL: s.c.tokenURL, StatusCode: resp.StatusCode}
	ct := resp.Header.Get("Content-Type")
	ok2xx := resp.StatusCode >= 200 && resp.StatusCode < 300
	if readErr != nil || len(body) > wire.MaxBody {
		// A body cut short may come whole next time; one over 1 MiB will
		// not (no token answer is that big).
		te.Temporary = readErr != nil
		te.err = &wire.MalformedError{Reason: "body over 1 MiB"}
		if readErr != nil {
			te.err = &wire.MalformedError{Reason: "body cut short: " + readErr.Error()}
		}
		if !ok2xx {
			te.Temporary = temporaryStatus(resp.StatusCode)
		}
		return nil, te
	}
	if ok2xx {
		r, eb, err := wire.ParseToken(ct, body)
		switch {
		case eb != nil:
			te.Code, te.Description = eb.Code, truncate(eb.Description, 300)
			te.err = &oauth2.RetrieveError{Response: resp, ErrorCode: eb.Code, ErrorDescription: eb.Description, ErrorURI: eb.URI}
			te.Temporary = temporaryCode(eb.Code)
			te.Hint = s.c.hint(te, s.defaultRequest())
			return nil, te
		case err != nil:
			// The body may hold a token: the RetrieveError gets no Body.
			// Only a body cut short is worth asking again for: a whole
			// answer that is not a token (a login page, another API's
			// JSON) will be the same next time.
			var me *wire.MalformedError
			te.Temporary = errors.As(err, &me) && me.Partial
			te.err = &oauth2.RetrieveError{Response: resp, ErrorDescription: err.Error()}
			te.Description = err.Error()
			switch {
			case me != nil && me.BadToken:
				te.Hint = "the token endpoint issued a token that cannot be sent in a header; it is refused rather than let it add headers to API requests: report it to the issuer's operator"
			case !te.Temporary:
				te.Hint = "the URL answered, but not as an OAuth 2.0 token endpoint: check " + s.c.endpointName() + "; Auth0's is https://TENANT/oauth/token"
			}
			return nil, te
		}
		ent := &Entry{AccessToken: r.AccessToken, TokenType: r.TokenType, IssuedAt: start, Extra: r.Extra}
		switch {
		case r.ExpiresIn > 0:
			ent.Expiry = start.Add(r.ExpiresIn)
		default:
			if exp, ok := jwt.Expiry(r.AccessToken); ok {
				if !exp.After(now) {
					te.Description = "the token's exp claim is already past (is the clock right?)"
					te.err = &oauth2.RetrieveError{Response: resp, ErrorDescription: te.Description}
					return nil, te
				}
				// Clamped like expires_in: a year-9999 exp is not a lifetime.
				ent.Expiry = exp
				if limit := start.Add(wire.MaxExpiresIn); exp.After(limit) {
					ent.Expiry = limit
				}
			} else {
				ent.Expiry = start.Add(s.c.cfg.DefaultLifetime)
			}
		}
		if te := s.c.checkTokenType(ent, resp.StatusCode, s.log); te != nil {
			return nil, te
		}
		return ent, nil
	}
	te.Temporary = temporaryStatus(resp.StatusCode)
	re := &oauth2.RetrieveError{Response: resp, Body: body}
	if eb := wire.ParseError(ct, body); eb != nil {
		re.ErrorCode, re.ErrorDescription, re.ErrorURI = eb.Code, eb.Description, eb.URI
		te.Code, te.Description = eb.Code, truncate(eb.Description, 300)
	}
	te.err = re
	te.Hint = s.c.hint(te, s.defaultRequest())
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		te.Description = "redirect to " + truncate(resp.Header.Get("Location"), 200) + " not followed: token requests go only to the configured URL"
	}
	if d, ok := wire.RetryAfter(resp.Header.Get("Retry-After"), now); ok {
		te.RetryAfter = d
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		if rl, ok := wire.ParseRateLimit(resp.Header, now); ok && !rl.Reset.IsZero() {
			// Waiting until exactly the reset second races the refill: add one.
			if d := rl.Reset.Sub(now) + time.Second; d > te.RetryAfter {
				te.RetryAfter = min(d, time.Hour)
			}
		}
	}
	return nil, te
}

// truncate cuts s to at most n bytes, at a character boundary, and marks
// the cut with "...".
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
