// Scrubbing the credential from what a token endpoint answers: an endpoint
// that echoes its request (into error_description, a Location header, a
// 5xx body, the fields of a token answer) must not put the client secret
// or the client assertion into errors, logs, stats or caches.

package m2mtoken

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/oauth2"
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

// requestScrubber returns the scrubber for the credential that req
// carries: the client secret, a client assertion, or the Basic header,
// each raw and form-encoded, path-escaped, JSON-escaped or Go-quoted, once
// or twice over.
// It reads the body through req.GetBody, so req is left as it was.
func requestScrubber(req *http.Request, secret string) *scrubber {
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
	// Each credential raw, and in each encoding applied once and twice
	// (a form-encoded secret quoted into a JSON error_description, say).
	encodings := []func(string) string{
		url.QueryEscape, url.PathEscape,
		func(s string) string { return jsonEscape(s, true) },
		func(s string) string { return jsonEscape(s, false) },
		func(s string) string { q := strconv.Quote(s); return q[1 : len(q)-1] },
	}
	var forms []string
	for _, c := range creds {
		if len(c) < minScrubbed {
			continue
		}
		forms = append(forms, c)
		for _, enc1 := range encodings {
			once := enc1(c)
			forms = append(forms, once)
			for _, enc2 := range encodings {
				forms = append(forms, enc2(once))
			}
		}
	}
	slices.SortFunc(forms, func(a, b string) int { return len(b) - len(a) })
	forms = slices.Compact(forms)
	pairs := make([]string, 0, 2*len(forms))
	for _, f := range forms {
		pairs = append(pairs, f, scrubbed)
	}
	return &scrubber{forms: forms, r: strings.NewReplacer(pairs...)}
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
// and a request without its credentials.
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
}

// scrubbedError is an error whose message had the credential in it.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }
