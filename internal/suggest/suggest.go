// Package suggest finds the name a user probably meant when they typed
// another: a flag, a command, an environment variable or a host name.
package suggest

import (
	"slices"
	"strings"
)

// Nearest returns the name in names closest to typed, if it is at most two
// edits away (a typo), else "". Ties go to the earlier name.
func Nearest(typed string, names []string) string {
	best, bestDist := "", 3
	for _, n := range names {
		if n == typed {
			continue
		}
		if d := Distance(typed, n); d < bestDist {
			best, bestDist = n, d
		}
	}
	return best
}

// Words returns the names that have typed as one or more of their whole
// dash- or underscore-separated words, such as "client-secret" and
// "client-secret-file" for "secret": a short form of a longer name.
func Words(typed string, names []string) []string {
	if typed == "" {
		return nil
	}
	var out []string
	for _, n := range names {
		if n == typed {
			continue
		}
		for _, sep := range []string{"-", "_"} {
			if strings.HasPrefix(n, typed+sep) || strings.HasSuffix(n, sep+typed) || strings.Contains(n, sep+typed+sep) {
				out = append(out, n)
				break
			}
		}
	}
	return out
}

// Distance is the Levenshtein distance between a and b, case-insensitive.
func Distance(a, b string) int {
	a, b = strings.ToLower(a), strings.ToLower(b)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Typo is a name that was given but is not known, and the known name it is
// probably a typo of.
type Typo struct{ Given, Meant string }

// UnreadVars returns the environment variables in environ ("NAME=value")
// that are set (not empty), start with one of prefixes, are not in read,
// and are a typo of a name in read: AUTH0_CLIENTID for AUTH0_CLIENT_ID.
func UnreadVars(environ, read, prefixes []string) []Typo {
	var out []Typo
	for _, kv := range environ {
		v, val, _ := strings.Cut(kv, "=")
		if strings.TrimSpace(val) == "" || !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(v, p) }) || slices.Contains(read, v) {
			continue
		}
		if best := Nearest(v, read); best != "" {
			out = append(out, Typo{v, best})
		}
	}
	return out
}

// String says it as the m2mtoken command and library do.
func (t Typo) String() string {
	return t.Given + " is set but not read: did you mean " + t.Meant + "?"
}
