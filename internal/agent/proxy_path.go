// The proxy's path boundary: a request whose path has a dot-segment ("."
// or ".."), in any form that a server behind the proxy may take for one,
// is refused, so that an upstream that normalises paths can never be led
// above --proxy's UPSTREAM path with the agent's token. The forms:
// percent-encoded (up to three times), split by an encoded slash or a
// backslash, followed by ";parameters" (Tomcat and Spring drop them
// before normalising), in look-alike characters that Unicode
// normalisation (NFKC) or Windows' best-fit mapping turns into dots and
// slashes, in overlong UTF-8 (%c0%ae), or cut short by a NUL byte.

package agent

import (
	"net/http"
	"net/url"
	"strings"
)

// maxUnescapes is how many rounds of percent-decoding a segment is given
// when looking for a dot-segment: an upstream, or a chain of them, may
// decode more than once.
const maxUnescapes = 3

// hasDotSegment reports whether r's path, as sent or as decoded, holds a
// "." or ".." segment in any of the forms above, or a NUL byte.
func hasDotSegment(r *http.Request) bool {
	return dotSegmentIn(r.URL.EscapedPath()) || dotSegmentIn(r.URL.Path)
}

func dotSegmentIn(p string) bool {
	for seg := range strings.FieldsFuncSeq(p, isSeparator) {
		for range maxUnescapes {
			if isDotSegment(seg) {
				return true
			}
			u, err := url.PathUnescape(seg)
			if err != nil || u == seg {
				break
			}
			seg = u
		}
		if isDotSegment(seg) {
			return true
		}
	}
	return false
}

func isSeparator(c rune) bool { return c == '/' || c == '\\' }

// isDotSegment reports whether seg, one segment of a path (decoded or
// not), is one that a server may take for "." or "..", or holds a NUL.
func isDotSegment(seg string) bool {
	f := fold(seg)
	if strings.ContainsRune(f, 0) {
		return true // C servers end the path there: "..%00" is ".."
	}
	if strings.ContainsFunc(f, isSeparator) {
		return dotSegmentIn(f) // the folding made a separator
	}
	f, _, _ = strings.Cut(f, ";")   // "..;x" is ".." once ";x" is dropped
	f = strings.TrimRight(f, " \t") // Windows drops trailing spaces
	return f == "." || f == ".."
}

// fold returns s with its characters as a lax server may read them: UTF-8
// decoded without refusing overlong forms (%c0%ae is "."), and with the
// look-alikes of ".", "/", "\", ";", "%" and the other ASCII characters
// (fullwidth forms, dot leaders) replaced by what NFKC or Windows'
// best-fit mapping makes of them. The result is only looked at, never
// forwarded.
func fold(s string) string {
	ascii := true
	for i := range len(s) {
		if s[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := laxDecode(s[i:])
		i += n
		if r >= 0xFF01 && r <= 0xFF5E { // fullwidth ASCII
			r -= 0xFF01 - '!'
		}
		if f, ok := lookAlikes[r]; ok {
			b.WriteString(f)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// lookAlikes are the characters besides fullwidth ASCII that Unicode's
// NFKC normalisation turns into ".", "..", ";", "/", "\" or "%" (every
// one, from Unicode's tables), and that Windows' best-fit mapping turns
// into a slash or a backslash.
var lookAlikes = map[rune]string{
	0x2024: ".", 0xFE52: ".", // one dot leader, small full stop
	0x2025: "..", 0xFE30: "..", // two dot leader, its vertical form
	0x037E: ";", 0xFE14: ";", 0xFE54: ";", // Greek question mark, vertical and small semicolon
	0xFE68: `\`, 0xFE6A: "%", // small reverse solidus, small percent sign
	0x2215: "/", 0x2044: "/", 0x2216: `\`, // division and fraction slash, set minus (best-fit)
	0x00A5: `\`, 0x20A9: `\`, // yen and won signs: a backslash in Japanese and Korean code pages
}

// laxDecode decodes the first character of s as UTF-8 as a lax decoder
// does: an overlong form ("\xc0\xae", "\xe0\x80\xae") is the character it
// spells. A byte that starts no such form is itself, as a rune below 256.
func laxDecode(s string) (rune, int) {
	c := s[0]
	var n int
	var r rune
	switch {
	case c < 0x80:
		return rune(c), 1
	case c&0xE0 == 0xC0:
		n, r = 2, rune(c&0x1F)
	case c&0xF0 == 0xE0:
		n, r = 3, rune(c&0x0F)
	case c&0xF8 == 0xF0:
		n, r = 4, rune(c&0x07)
	default:
		return rune(c), 1
	}
	if len(s) < n {
		return rune(c), 1
	}
	for i := 1; i < n; i++ {
		if s[i]&0xC0 != 0x80 {
			return rune(c), 1
		}
		r = r<<6 | rune(s[i]&0x3F)
	}
	return r, n
}
