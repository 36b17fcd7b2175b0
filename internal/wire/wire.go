// Package wire parses token endpoint responses and the headers that come
// with them. It is tolerant of what real servers send (numbers as strings,
// form-encoded bodies, odd content types) and strict about what matters: a
// response without an access token, or with a token type other than Bearer
// or DPoP, is never taken for a token.
package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// MaxBody is the most of a response body that is read.
const MaxBody = 1 << 20

// Response is a successful token response.
type Response struct {
	AccessToken string
	TokenType   string
	// ExpiresIn is the lifetime the server gave, or 0 if it gave none (or a
	// non-positive one).
	ExpiresIn time.Duration
	Scope     string
	// Extra holds every field of the response except the access token.
	Extra map[string]any
}

// ErrorBody is RFC 6749's error response (section 5.2).
type ErrorBody struct {
	Code        string
	Description string
	URI         string
}

// MalformedError says that a body could not be read as a token response.
// It never quotes the body, which may hold a token.
type MalformedError struct {
	Reason string
	// Partial reports that the body looks cut short (empty, or JSON that
	// ends early), so that asking again may succeed. A complete body that
	// is not a token answer (HTML, JSON without access_token) is not.
	Partial bool
	// BadToken reports that the answer had an access token that cannot be
	// sent: it has a byte outside visible ASCII (a control character, CR
	// or LF among them, would split the Authorization header it goes into).
	BadToken bool
}

// Error says what is wrong with the answer.
func (e *MalformedError) Error() string { return "malformed token response: " + e.Reason }

// MaxExpiresIn bounds a token's lifetime, from expires_in or from a JWT's
// exp: larger values are clamped to it. No real server issues
// client-credentials tokens for longer than a year.
const MaxExpiresIn = 366 * 24 * time.Hour

const maxExpiresIn = MaxExpiresIn

// ParseToken reads a 2xx body. It returns the token, or an *ErrorBody-bearing
// error (an `error` field in a 200 counts as an error), or a *MalformedError.
func ParseToken(contentType string, body []byte) (*Response, *ErrorBody, error) {
	fields, err := decode(contentType, body)
	if err != nil {
		return nil, nil, err
	}
	if eb := errorFrom(fields); eb != nil {
		return nil, eb, nil
	}
	r := &Response{Extra: make(map[string]any, len(fields))}
	for k, v := range fields {
		if k != "access_token" {
			r.Extra[k] = v
		}
	}
	at, ok := fields["access_token"].(string)
	if !ok || strings.TrimSpace(at) == "" {
		return nil, nil, &MalformedError{Reason: "no access_token"}
	}
	if !IsHeaderSafeToken(at) {
		return nil, nil, &MalformedError{BadToken: true, Reason: "the access_token cannot go in an Authorization header: " +
			"it has a control character (such as CR or LF), a space or a byte outside ASCII; " +
			"a token is visible ASCII only (0x21-0x7E)"}
	}
	r.AccessToken = at
	tt, _ := fields["token_type"].(string)
	switch {
	case strings.EqualFold(tt, "bearer"):
		r.TokenType = "Bearer"
	case strings.EqualFold(tt, "dpop"):
		// RFC 9449: a token bound to the key of the request's DPoP proof.
		r.TokenType = "DPoP"
	case tt == "":
		return nil, nil, &MalformedError{Reason: "no token_type"}
	default:
		return nil, nil, &MalformedError{Reason: fmt.Sprintf("token_type %.40q is not Bearer or DPoP", tt)}
	}
	r.ExpiresIn = expiresIn(fields["expires_in"])
	r.Scope, _ = fields["scope"].(string)
	return r, nil, nil
}

// IsHeaderSafeToken reports whether tok can go into an Authorization
// header as it is: it is not empty and every byte is visible ASCII (0x21
// to 0x7E). What could end a header or hide in one is refused: CR, LF,
// NUL and the other control characters (0x00-0x1F, 0x7F), a space, and
// any byte outside ASCII.
//
// RFC 6750's b64token (letters, digits, -._~+/ then '=') is stricter, but
// real issuers send more than that: Salesforce's tokens carry '!', X's
// app-only bearer tokens percent-encoded '+' and '=' ("%2B", "%3D"), and
// other opaque tokens ':' or ','. x/oauth2 accepts all of them, and so
// does this.
func IsHeaderSafeToken(tok string) bool {
	if tok == "" {
		return false
	}
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// ParseError reads the body of a non-2xx answer. It returns nil if the body
// is not an RFC 6749 error.
func ParseError(contentType string, body []byte) *ErrorBody {
	fields, err := decode(contentType, body)
	if err != nil {
		return nil
	}
	return errorFrom(fields)
}

func errorFrom(fields map[string]any) *ErrorBody {
	code, _ := fields["error"].(string)
	if code == "" {
		return nil
	}
	desc, _ := fields["error_description"].(string)
	uri, _ := fields["error_uri"].(string)
	return &ErrorBody{Code: code, Description: desc, URI: uri}
}

// decode turns a JSON or form body into fields. JSON numbers stay
// json.Number; form values are strings.
func decode(contentType string, body []byte) (map[string]any, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, &MalformedError{Reason: "empty body", Partial: true}
	}
	mt, _, _ := mime.ParseMediaType(contentType)
	if mt == "application/x-www-form-urlencoded" || mt == "text/plain" && body[0] != '{' {
		vals, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, &MalformedError{Reason: "form body does not parse"}
		}
		fields := make(map[string]any, len(vals))
		for k, v := range vals {
			if len(v) > 0 {
				fields[k] = v[0]
			}
		}
		return fields, nil
	}
	if body[0] != '{' {
		if mt == "text/html" || body[0] == '<' {
			return nil, &MalformedError{Reason: "HTML instead of JSON"}
		}
		return nil, &MalformedError{Reason: fmt.Sprintf("%s body is not a JSON object", describeType(mt))}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var fields map[string]any
	if err := dec.Decode(&fields); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, &MalformedError{Reason: "JSON cut short", Partial: true}
		}
		return nil, &MalformedError{Reason: "invalid JSON"}
	}
	return fields, nil
}

func describeType(mt string) string {
	if mt == "" {
		return "untyped"
	}
	return fmt.Sprintf("%.40q", mt)
}

// expiresIn reads expires_in as a JSON number or a numeric string, in
// seconds. Missing, unparsable, non-finite or non-positive values give 0.
func expiresIn(v any) time.Duration {
	var s string
	switch x := v.(type) {
	case json.Number:
		s = string(x)
	case string:
		s = strings.TrimSpace(x)
	case float64:
		s = strconv.FormatFloat(x, 'f', -1, 64)
	default:
		return 0
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 {
		return 0
	}
	if f >= maxExpiresIn.Seconds() {
		return maxExpiresIn
	}
	return time.Duration(f * float64(time.Second))
}

// RetryAfter parses a Retry-After header: delay seconds or an HTTP date
// (taken relative to now). It returns false when the header is absent or
// unusable. A date in the past gives 0.
func RetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, false
		}
		if n > 86400 {
			n = 86400
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := time.Parse(time.RFC1123, v)
	if err != nil {
		if t, err = time.Parse(time.RFC850, v); err != nil {
			if t, err = time.Parse(time.ANSIC, v); err != nil {
				return 0, false
			}
		}
	}
	d := t.Sub(now)
	if d < 0 {
		d = 0
	}
	if d > 24*time.Hour {
		d = 24 * time.Hour
	}
	return d, true
}

// RateLimit is what the X-RateLimit-* headers of one answer said: the
// tenant-wide rate limit of the endpoint, shared by every client.
type RateLimit struct {
	Limit, Remaining int64
	// Reset is when the bucket refills, in the local clock (corrected for
	// the server's Date header when it sent one).
	Reset time.Time
}

// Header is the subset of http.Header this package reads.
type Header interface{ Get(string) string }

// ParseRateLimit reads X-RateLimit-Limit/Remaining/Reset. ok is false if
// none was present. The reset time, which Auth0 sends as Unix seconds in
// the server's clock, is moved into the local clock using the Date header
// when there is one.
func ParseRateLimit(h Header, now time.Time) (rl RateLimit, ok bool) {
	if v, err := strconv.ParseInt(strings.TrimSpace(h.Get("X-RateLimit-Limit")), 10, 64); err == nil {
		rl.Limit, ok = v, true
	}
	if v, err := strconv.ParseInt(strings.TrimSpace(h.Get("X-RateLimit-Remaining")), 10, 64); err == nil {
		rl.Remaining, ok = v, true
	}
	if v, err := strconv.ParseInt(strings.TrimSpace(h.Get("X-RateLimit-Reset")), 10, 64); err == nil && v > 0 && v < 1<<40 {
		reset := time.Unix(v, 0)
		if date, err := time.Parse(time.RFC1123, h.Get("Date")); err == nil {
			reset = now.Add(reset.Sub(date))
		}
		rl.Reset, ok = reset, true
	}
	return rl, ok
}

// Quota is one bucket of an Auth0 fine-grained quota header.
type Quota struct {
	// Bucket is the bucket's name, such as "per_hour" or "per_day".
	Bucket string
	// Limit and Remaining are the bucket's q and r: tokens allowed per
	// period, and tokens left in this one.
	Limit, Remaining int64
	// ResetIn is the bucket's t: how long until it refills.
	ResetIn time.Duration
}

// Quota header bounds: more buckets, longer names or longer resets than
// these are not real Auth0 answers.
const (
	MaxQuotaBuckets = 8
	maxBucketName   = 32
	maxQuotaReset   = 366 * 24 * time.Hour
)

// ParseQuotas reads Auth0's Auth0-Client-Quota-Limit and
// Auth0-Organization-Quota-Limit headers. ok is false if neither was there.
func ParseQuotas(h Header) (client, org []Quota, ok bool) {
	cv, ov := h.Get("Auth0-Client-Quota-Limit"), h.Get("Auth0-Organization-Quota-Limit")
	return ParseQuota(cv), ParseQuota(ov), cv != "" || ov != ""
}

// ParseQuota reads one quota header: buckets separated by commas, each a
// list of key=value pairs separated by semicolons, such as
// "b=per_hour;q=10;r=7;t=3540,b=per_day;q=100;r=93;t=86340". A bucket
// needs a name (b, letters, digits, '_' or '-') and a limit (q); remaining
// (r) and reset (t, seconds) default to the limit and to 0. Malformed
// buckets are skipped, negative numbers refused, and at most
// [MaxQuotaBuckets] kept.
func ParseQuota(v string) []Quota {
	var out []Quota
	for part := range strings.SplitSeq(v, ",") {
		if len(out) == MaxQuotaBuckets {
			break
		}
		var q Quota
		var hasLimit, hasRemaining, bad bool
		for kv := range strings.SplitSeq(part, ";") {
			k, val, found := strings.Cut(strings.TrimSpace(kv), "=")
			if !found {
				continue
			}
			k, val = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(val)
			switch k {
			case "b":
				if !validBucket(val) {
					bad = true
				}
				q.Bucket = val
			case "q", "r", "t":
				n, err := strconv.ParseInt(val, 10, 64)
				if err != nil || n < 0 {
					bad = true
					continue
				}
				switch k {
				case "q":
					q.Limit, hasLimit = n, true
				case "r":
					q.Remaining, hasRemaining = n, true
				case "t":
					q.ResetIn = time.Duration(min(n, int64(maxQuotaReset/time.Second))) * time.Second
				}
			}
		}
		if bad || q.Bucket == "" || !hasLimit {
			continue
		}
		if !hasRemaining {
			q.Remaining = q.Limit
		}
		out = append(out, q)
	}
	return out
}

func validBucket(b string) bool {
	if b == "" || len(b) > maxBucketName {
		return false
	}
	for _, c := range []byte(b) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
