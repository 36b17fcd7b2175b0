// The proxy's path boundary: a request whose path has a dot-segment ("."
// or ".."), raw or percent-encoded (even twice), or split by an encoded
// slash or a backslash, is refused, so that an upstream that normalises
// paths can never be led above --proxy's UPSTREAM path with the agent's
// token.

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
// "." or ".." segment, taking "/", "\", "%2F" and "%5C" as separators.
func hasDotSegment(r *http.Request) bool {
	return dotSegmentIn(r.URL.EscapedPath()) || dotSegmentIn(r.URL.Path)
}

func dotSegmentIn(p string) bool {
	for seg := range strings.FieldsFuncSeq(p, func(c rune) bool { return c == '/' || c == '\\' }) {
		for range maxUnescapes {
			if seg == "." || seg == ".." {
				return true
			}
			if strings.ContainsAny(seg, `/\`) && dotSegmentIn(seg) {
				return true
			}
			u, err := url.PathUnescape(seg)
			if err != nil || u == seg {
				break
			}
			seg = u
		}
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}
