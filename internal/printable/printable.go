// Package printable makes text that came from outside (what a token
// endpoint answered, a status a shared cache recorded) safe to show on a
// terminal or in a line of a log: such text may carry escape sequences
// that recolour or clear a terminal, CR and LF that forge log lines, or
// bidirectional overrides that make text read differently than it is.
package printable

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Line returns s with every character that is not printable text escaped,
// Go-style: control characters (ESC, CR, LF, tab, backspace, DEL, the C1
// controls) become \x1b, \r, \n, ...; Unicode format and separator
// characters (bidirectional overrides, line separators, spaces other than
// the ASCII space) become \u202e and the like; a byte that is not UTF-8
// becomes \xff. Quotes and backslashes are kept as they are. If max > 0
// and the result would be longer than max bytes, it is cut at a character
// boundary within max bytes and "..." is added.
func Line(s string, max int) string {
	if plain(s) {
		if max > 0 && len(s) > max {
			return s[:max] + "..."
		}
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		var piece string
		switch {
		case r == utf8.RuneError && size == 1:
			piece = fmt.Sprintf(`\x%02x`, s[i])
		case r == ' ' || unicode.IsPrint(r):
			piece = s[i : i+size]
		default:
			q := strconv.QuoteRuneToASCII(r)
			piece = q[1 : len(q)-1]
		}
		if max > 0 && b.Len()+len(piece) > max {
			b.WriteString("...")
			return b.String()
		}
		b.WriteString(piece)
		i += size
	}
	return b.String()
}

// plain reports whether s is printable ASCII only.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}
