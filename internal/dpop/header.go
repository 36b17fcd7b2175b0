package dpop

import (
	"net/url"
	"strings"
)

// MaxNonce bounds the nonces this package accepts from a server.
const MaxNonce = 1024

// ParseNonce reads a DPoP-Nonce header value: RFC 9449's 1*NQCHAR
// (printable ASCII except space, double quote and backslash), at most
// MaxNonce bytes, surrounding whitespace ignored. It returns false for
// anything else, so that a server's junk never reaches a proof.
func ParseNonce(v string) (string, bool) {
	v = strings.Trim(v, " \t")
	if v == "" || len(v) > MaxNonce {
		return "", false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return "", false
		}
	}
	return v, true
}

// HTU returns the htu of a request to u: scheme and host lowercased, the
// path as sent, no query, no fragment, no user info. origin is
// scheme://host, the key under which a server's nonce is kept.
func HTU(u *url.URL) (htu, origin string) {
	origin = strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host)
	p := u.EscapedPath()
	if p == "" {
		p = "/"
	}
	return origin + p, origin
}

// Challenge is one challenge of a WWW-Authenticate header.
type Challenge struct {
	// Scheme is the auth-scheme, as sent (compare it case-insensitively).
	Scheme string
	// Token68 is the challenge's token68, if it has one instead of
	// parameters.
	Token68 string
	// Params are the auth-params; names are lowercased.
	Params map[string]string
}

// Limits on what ParseChallenges reads.
const (
	maxHeader     = 8 << 10
	maxChallenges = 16
	maxParams     = 32
)

// ParseChallenges reads the challenges of WWW-Authenticate header values
// (RFC 9110 section 11.6.1): several values, several challenges per value,
// auth-params with token or quoted-string values. It reads as much as
// parses and ignores the rest; it never fails. At most 16 challenges of 32
// parameters each, from at most 8 KiB of each value, are returned.
func ParseChallenges(values []string) []Challenge {
	var out []Challenge
	for _, v := range values {
		if len(v) > maxHeader {
			v = v[:maxHeader]
		}
		p := parser{s: v}
		for len(out) < maxChallenges {
			c, ok := p.challenge()
			if !ok {
				break
			}
			out = append(out, c)
		}
	}
	return out
}

// Error returns the error parameter of the first challenge with the given
// scheme (case-insensitive), and whether there was such a challenge.
func Error(chs []Challenge, scheme string) (string, bool) {
	for _, c := range chs {
		if strings.EqualFold(c.Scheme, scheme) {
			return c.Params["error"], true
		}
	}
	return "", false
}

type parser struct {
	s string
	i int
}

func (p *parser) skipOWS() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

// skipSeps skips whitespace and empty list elements.
func (p *parser) skipSeps() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == ',') {
		p.i++
	}
}

func (p *parser) token() string {
	start := p.i
	for p.i < len(p.s) && isTchar(p.s[p.i]) {
		p.i++
	}
	return p.s[start:p.i]
}

// challenge reads one challenge; false at the end or on what does not
// parse.
func (p *parser) challenge() (Challenge, bool) {
	p.skipSeps()
	scheme := p.token()
	if scheme == "" {
		return Challenge{}, false
	}
	c := Challenge{Scheme: scheme}
	if p.i < len(p.s) && p.s[p.i] != ' ' && p.s[p.i] != '\t' && p.s[p.i] != ',' {
		return Challenge{}, false
	}
	p.skipOWS()
	// A token68 is the whole rest of the challenge.
	if t, ok := p.token68(); ok {
		c.Token68 = t
		return c, true
	}
	for {
		p.skipSeps()
		save := p.i
		name := p.token()
		if name == "" {
			return c, true
		}
		p.skipOWS()
		if p.i >= len(p.s) || p.s[p.i] != '=' {
			// The next challenge's scheme.
			p.i = save
			return c, true
		}
		p.i++
		p.skipOWS()
		var val string
		if p.i < len(p.s) && p.s[p.i] == '"' {
			var ok bool
			if val, ok = p.quoted(); !ok {
				return c, true
			}
		} else {
			val = p.token()
		}
		if c.Params == nil {
			c.Params = make(map[string]string, 4)
		}
		if len(c.Params) < maxParams {
			name = strings.ToLower(name)
			if _, dup := c.Params[name]; !dup {
				c.Params[name] = val
			}
		}
		p.skipOWS()
		if p.i < len(p.s) && p.s[p.i] != ',' {
			// Junk after a parameter: stop here.
			p.i = len(p.s)
			return c, true
		}
	}
}

// token68 reads a token68 if one stands here, up to the end of the value
// or a comma.
func (p *parser) token68() (string, bool) {
	j := p.i
	for j < len(p.s) && isToken68(p.s[j]) {
		j++
	}
	if j == p.i {
		return "", false
	}
	k := j
	for k < len(p.s) && p.s[k] == '=' {
		k++
	}
	// A token68 ends the challenge; "name=" followed by a value is a
	// parameter instead.
	e := k
	for e < len(p.s) && (p.s[e] == ' ' || p.s[e] == '\t') {
		e++
	}
	if e < len(p.s) && p.s[e] != ',' {
		return "", false
	}
	t := p.s[p.i:k]
	p.i = e
	return t, true
}

func (p *parser) quoted() (string, bool) {
	p.i++ // the opening quote
	var b strings.Builder
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return b.String(), true
		case c == '\\' && p.i+1 < len(p.s):
			b.WriteByte(p.s[p.i+1])
			p.i += 2
		default:
			b.WriteByte(c)
			p.i++
		}
	}
	return "", false
}

func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func isToken68(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'
}
