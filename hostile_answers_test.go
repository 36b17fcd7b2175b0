package m2mtoken

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestTokenWithControlCharactersRefused replays finding 6 of issue 20: an
// issuer's access token with CR/LF in it would become a header of its own
// in every request that carries it. It is refused as a permanent error
// that names the field and quotes nothing of the token.
func TestTokenWithControlCharactersRefused(t *testing.T) {
	for name, tok := range map[string]string{
		"CRLF":  `tok\r\nX-Injected: 1`,
		"LF":    `tok\nX-Injected: 1`,
		"NUL":   `tok\u0000x`,
		"space": `tok X-Injected`,
		"DEL":   "tok\u007f",
	} {
		t.Run(name, func(t *testing.T) {
			e := newEndpoint(t)
			e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprintf(w, `{"access_token":"%s","token_type":"Bearer","expires_in":3600}`, tok)
				return true
			})
			s, _ := testSource(t, e, nil)
			got, err := s.Token()
			if err == nil {
				t.Fatalf("token %q accepted", got.AccessToken)
			}
			var te *TokenError
			if !errors.As(err, &te) || te.Temporary {
				t.Fatalf("error %v: want a permanent *TokenError", err)
			}
			if !strings.Contains(err.Error(), "access_token") || strings.Contains(err.Error(), "X-Injected") {
				t.Fatalf("error %q: want it to name access_token and quote none of it", err)
			}
			if _, err := s.Token(); err == nil || e.count() != 1 {
				t.Fatalf("asked again: %d requests, err %v; want the error remembered", e.count(), err)
			}
		})
	}
	// Every RFC 6750 b64token character is still a token.
	e := newEndpoint(t)
	const ok = "AZaz09-._~+/tok=="
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"%s","token_type":"Bearer","expires_in":3600}`, ok)
		return true
	})
	s, _ := testSource(t, e, nil)
	if got, err := s.Token(); err != nil || got.AccessToken != ok {
		t.Fatalf("b64token refused: %v", err)
	}
}

// TestJWTExpiryClamped replays finding 9: a JWT whose exp is in the year
// 9999, with no expires_in, is kept no longer than an expires_in would be
// (366 days).
func TestJWTExpiryClamped(t *testing.T) {
	jwt := b64(`{"alg":"none"}`) + "." + b64(`{"exp":253402300799}`) + ".sig"
	e := newEndpoint(t)
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"%s","token_type":"Bearer"}`, jwt)
		return true
	})
	s, clk := testSource(t, e, nil)
	tok, err := s.Token()
	if err != nil {
		t.Fatal(err)
	}
	if limit := clk.Now().Add(366 * 24 * time.Hour); tok.Expiry.After(limit) {
		t.Fatalf("expiry %v: taken unclamped (limit %v)", tok.Expiry, limit)
	}
}
