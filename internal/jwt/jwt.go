// Package jwt reads the few claims this module needs from a compact JWS
// without verifying it: the token endpoint was reached over TLS and the
// token is opaque to its holder; the claims only help pick an expiry when
// the endpoint did not say.
package jwt

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"strings"
	"time"
)

// maxLen bounds the tokens this package will decode.
const maxLen = 64 << 10

// Expiry returns the exp claim of a JWT, or false if tok is not a JWT or
// has no usable exp.
func Expiry(tok string) (time.Time, bool) {
	if len(tok) > maxLen || strings.Count(tok, ".") != 2 {
		return time.Time{}, false
	}
	parts := strings.SplitN(tok, ".", 3)
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, false
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if err := dec.Decode(&claims); err != nil {
		return time.Time{}, false
	}
	f, err := claims.Exp.Float64()
	if err != nil || math.IsNaN(f) || f < 1 || f > 1<<40 {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}
