// The extra fields of token answers (token_type, expires_in, scope, ...),
// interned per client: the tokens of a pool usually carry the same ones,
// and a map per token would cost more than the rest of the token.

package m2mtoken

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// maxExtras bounds the distinct extras a client keeps.
const maxExtras = 256

// extras interns maps of extra fields.
type extras struct {
	mu sync.Mutex
	m  map[string]map[string]any
}

// intern returns a map equal to m that earlier tokens may share, or m. Only
// maps of strings, numbers and booleans are interned; the maps are never
// modified once made (tokens are shared read-only).
func (x *extras) intern(m map[string]any) map[string]any {
	if len(m) == 0 {
		return m
	}
	key, ok := extrasKey(m)
	if !ok {
		return m
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if have, ok := x.m[key]; ok {
		return have
	}
	if x.m == nil || len(x.m) >= maxExtras {
		x.m = make(map[string]map[string]any)
	}
	x.m[key] = m
	return m
}

// extrasKey writes m out without ambiguity, or reports false if it holds
// a value that is not a string, number or boolean.
func extrasKey(m map[string]any) (string, bool) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(strconv.Quote(k))
		switch v := m[k].(type) {
		case string:
			b.WriteString("s" + strconv.Quote(v))
		case json.Number:
			b.WriteString("n" + strconv.Quote(string(v)))
		case float64:
			b.WriteString("f" + strconv.FormatFloat(v, 'g', -1, 64))
		case bool:
			b.WriteString("b" + strconv.FormatBool(v))
		default:
			return "", false
		}
		b.WriteByte(';')
	}
	return b.String(), true
}
