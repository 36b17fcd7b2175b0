// Scrubbing the credential from what a token endpoint answers: an endpoint
// that echoes its request (into error_description, a Location header, a
// 5xx body, the fields of a token answer) must not put the client secret
// or the client assertion into errors, logs, stats or caches. Nor may the
// text of an error put escape sequences, CR or LF on a terminal or into a
// log line: they are escaped.

package m2mtoken

import (
	"bytes"
	"cmp"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/oauth2"

	"github.com/m2mtoken/m2mtoken/internal/printable"
)

// scrubbed replaces the credential wherever an answer repeated it.
const scrubbed = "[REDACTED]"

// minScrubbed is the shortest form of a credential that is scrubbed; a
// shorter one would garble every message it happens to occur in.
const minScrubbed = 4

// scrubber removes every form of a request's credential from text.
type scrubber struct {
	forms []string // longest first
	r     *strings.Replacer
}

// scrubberCache keeps the last scrubber built, for the next request that
// carries the same credential: every request with a client secret does
// (each client assertion is new), and building one costs more than the
// rest of a token request's own work.
type scrubberCache struct {
	mu   sync.Mutex
	key  string
	last *scrubber
}

// forRequest returns the scrubber of the credential req carries (see
// newScrubber), built once per credential.
func (c *scrubberCache) forRequest(req *http.Request, secret string) *scrubber {
	creds := requestCredentials(req, secret)
	key := strings.Join(creds, "\x00")
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil || c.key != key {
		c.key, c.last = key, newScrubber(creds)
	}
	return c.last
}

// requestCredentials returns the credentials req carries: the client
// secret, the Basic header's value, and the body's client_secret or
// client_assertion. It reads the body through req.GetBody, so req is left
// as it was.
func requestCredentials(req *http.Request, secret string) []string {
	creds := []string{secret}
	if v, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Basic "); ok {
		creds = append(creds, v)
	}
	if req.GetBody != nil {
		if rc, err := req.GetBody(); err == nil {
			b, _ := io.ReadAll(io.LimitReader(rc, 1<<20))
			rc.Close()
			creds = append(creds, bodyCredentials(req.Header.Get("Content-Type"), b)...)
		}
	}
	return creds
}

// newScrubber returns the scrubber for creds (the client secret, a client
// assertion, the Basic header): each raw and form-encoded, path-escaped,
// JSON-escaped, Go-quoted, in hex or with every byte percent-encoded (both
// in either case), once or twice over. An echo transformed otherwise
// (reversed, cut into pieces, base64 of the secret alone) is not
// recognised.
func newScrubber(creds []string) *scrubber {
	// Each credential raw, and in each encoding applied once and twice
	// (a form-encoded secret quoted into a JSON error_description, a hex
	// dump of a form body, say); a byte-wise encoding (hex, every byte
	// percent-encoded) is not applied to another's output.
	escapes := []func(string) string{
		url.QueryEscape, url.PathEscape,
		func(s string) string { return jsonEscape(s, true) },
		func(s string) string { return jsonEscape(s, false) },
		func(s string) string { q := strconv.Quote(s); return q[1 : len(q)-1] },
	}
	bytewise := []func(string) string{
		func(s string) string { return hex.EncodeToString([]byte(s)) },
		func(s string) string { return strings.ToUpper(hex.EncodeToString([]byte(s))) },
		func(s string) string { return percentAll(s, lowerHex) },
		func(s string) string { return percentAll(s, upperHex) },
	}
	var forms []string
	for _, c := range creds {
		if len(c) < minScrubbed {
			continue
		}
		forms = append(forms, c)
		for _, enc1 := range escapes {
			once := enc1(c)
			forms = append(forms, once)
			for _, enc2 := range slices.Concat(escapes, bytewise) {
				forms = append(forms, enc2(once))
			}
		}
		for _, enc1 := range bytewise {
			once := enc1(c)
			forms = append(forms, once)
			for _, enc2 := range escapes {
				forms = append(forms, enc2(once))
			}
		}
	}
	slices.SortFunc(forms, func(a, b string) int { return cmp.Or(len(b)-len(a), strings.Compare(a, b)) })
	forms = slices.Compact(forms)
	pairs := make([]string, 0, 2*len(forms))
	for _, f := range forms {
		pairs = append(pairs, f, scrubbed)
	}
	return &scrubber{forms: forms, r: strings.NewReplacer(pairs...)}
}

const (
	lowerHex = "0123456789abcdef"
	upperHex = "0123456789ABCDEF"
)

// percentAll percent-encodes every byte of s, as %XX with the digits of
// digits.
func percentAll(s, digits string) string {
	b := make([]byte, 0, 3*len(s))
	for i := 0; i < len(s); i++ {
		b = append(b, '%', digits[s[i]>>4], digits[s[i]&15])
	}
	return string(b)
}

// bodyCredentials returns the client_secret and client_assertion of a
// token request body, form or JSON.
func bodyCredentials(contentType string, b []byte) []string {
	fields := []string{"client_secret", "client_assertion"}
	var out []string
	if strings.HasPrefix(contentType, "application/json") {
		var m map[string]any
		json.Unmarshal(b, &m)
		for _, f := range fields {
			if v, ok := m[f].(string); ok {
				out = append(out, v)
			}
		}
		return out
	}
	vals, _ := url.ParseQuery(string(b))
	for _, f := range fields {
		out = append(out, vals[f]...)
	}
	return out
}

// jsonEscape is s as it appears inside a JSON string.
func jsonEscape(s string, html bool) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(html)
	enc.Encode(s)
	return strings.TrimSuffix(strings.TrimSpace(b.String()), `"`)[1:]
}

// str scrubs s. Text that was cut short ("...", as truncate ends it) is
// also scrubbed of a credential's beginning at its end.
func (sc *scrubber) str(s string) string {
	if len(sc.forms) == 0 || s == "" {
		return s
	}
	s = sc.r.Replace(s)
	if head, ok := strings.CutSuffix(s, "..."); ok {
		for _, f := range sc.forms {
			for n := len(f) - 1; n >= minScrubbed; n-- {
				if strings.HasSuffix(head, f[:n]) {
					return head[:len(head)-n] + scrubbed + "..."
				}
			}
		}
	}
	return s
}

// value scrubs the strings in v, a decoded JSON value, and returns it.
func (sc *scrubber) value(v any) any {
	switch x := v.(type) {
	case string:
		return sc.str(x)
	case map[string]any:
		for k, e := range x {
			x[k] = sc.value(e)
		}
	case []any:
		for i, e := range x {
			x[i] = sc.value(e)
		}
	}
	return v
}

// header returns a copy of h, scrubbed.
func (sc *scrubber) header(h http.Header) http.Header {
	out := make(http.Header, len(h))
	for k, vs := range h {
		for _, v := range vs {
			out[k] = append(out[k], sc.str(v))
		}
	}
	return out
}

// tokenError scrubs te in place: its code, description and hint, and the
// error it wraps. A wrapped *oauth2.RetrieveError is replaced by a copy
// whose body and headers are scrubbed and whose Response holds no body
// and a request without its credentials. The code and description are
// then escaped (printable.Line): the credential is matched as it was
// sent, before escaping could change its form.
func (sc *scrubber) tokenError(te *TokenError) {
	te.Code, te.Description, te.Hint = sc.str(te.Code), sc.str(te.Description), sc.str(te.Hint)
	var re *oauth2.RetrieveError
	switch {
	case te.err == nil:
	case errors.As(te.err, &re) && te.err == error(re):
		c := &oauth2.RetrieveError{Body: []byte(sc.str(string(re.Body))), ErrorCode: sc.str(re.ErrorCode),
			ErrorDescription: sc.str(re.ErrorDescription), ErrorURI: sc.str(re.ErrorURI)}
		if re.Response != nil {
			resp := *re.Response
			resp.Header, resp.Trailer, resp.Body = sc.header(resp.Header), nil, http.NoBody
			if resp.Request != nil {
				req := resp.Request.Clone(resp.Request.Context())
				req.Header.Del("Authorization")
				req.Header.Del("DPoP")
				req.Body, req.GetBody = nil, nil
				resp.Request = req
			}
			c.Response = &resp
		}
		te.err = c
	default:
		if msg := te.err.Error(); sc.str(msg) != msg {
			te.err = &scrubbedError{msg: sc.str(msg), err: te.err}
		}
	}
	te.Code, te.Description = printable.Line(te.Code, 0), printable.Line(te.Description, 0)
}

// scrubbedError is an error whose message had the credential in it.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }
