package wire

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// FuzzParseToken: any content type and body. Never a panic, never a token
// without an access token or with a type other than Bearer or DPoP, never a
// negative or unclamped lifetime.
func FuzzParseToken(f *testing.F) {
	f.Add("application/json", []byte(`{"access_token":"a","token_type":"Bearer","expires_in":86400}`))
	f.Add("application/json", []byte(`{"access_token":"a","token_type":"bearer","expires_in":"1e9"}`))
	f.Add("application/x-www-form-urlencoded", []byte(`access_token=a&token_type=bearer&expires_in=10`))
	f.Add("text/html", []byte(`<html>`))
	f.Add("", []byte(`{"error":"access_denied"}`))
	f.Add("application/json", []byte(`{"access_token":"tok\r\nX-Injected: 1","token_type":"Bearer"}`))
	f.Add("application/x-www-form-urlencoded", []byte(`access_token=tok%0D%0AX-Injected:+1&token_type=bearer`))
	for _, tok := range realTokens {
		f.Add("application/json", tokenBody(tok))
	}
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		r, eb, err := ParseToken(ct, body)
		if r == nil && eb == nil && err == nil {
			t.Fatal("no token, no error body and no error")
		}
		if r != nil {
			if eb != nil || err != nil {
				t.Fatal("a token and an error")
			}
			if strings.TrimSpace(r.AccessToken) == "" || (r.TokenType != "Bearer" && r.TokenType != "DPoP") {
				t.Fatalf("accepted token %q type %q", r.AccessToken, r.TokenType)
			}
			// The token goes into a header as it is: visible ASCII only.
			if !visibleASCII(r.AccessToken) {
				t.Fatalf("accepted token %q, which is not visible ASCII", r.AccessToken)
			}
			if r.ExpiresIn < 0 || r.ExpiresIn > maxExpiresIn {
				t.Fatalf("lifetime %v", r.ExpiresIn)
			}
		}
		ParseError(ct, body)
	})
}

// FuzzTokenCharacters: any access token in an otherwise good answer. It
// is accepted exactly when it is visible ASCII (0x21-0x7E): every token
// real issuers send, and nothing that could end or hide in a header.
func FuzzTokenCharacters(f *testing.F) {
	for _, tok := range realTokens {
		f.Add(tok)
	}
	for _, tok := range dangerousTokens() {
		f.Add(tok)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		r, _, err := ParseToken("application/json", tokenBody(tok))
		if want := visibleASCII(tok); (r != nil) != want {
			t.Fatalf("token %q: accepted %v (%v), want %v", tok, r != nil, err, want)
		}
		if r != nil && r.AccessToken != tok {
			t.Fatalf("token %q came out as %q", tok, r.AccessToken)
		}
	})
}

// visibleASCII is the rule, written apart from the parser's.
func visibleASCII(tok string) bool {
	return tok != "" && !strings.ContainsFunc(tok, func(c rune) bool { return c < '!' || c > '~' })
}

// tokenBody is a good JSON answer with the access token tok.
func tokenBody(tok string) []byte {
	b, _ := json.Marshal(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 3600})
	return b
}

// FuzzRetryAfter: the delay is never negative or over a day.
func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"5", "0", "-1", "Wed, 21 Oct 2015 07:28:00 GMT", "99999999999999999999", "soon"} {
		f.Add(s)
	}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := RetryAfter(v, now)
		if d < 0 || d > 24*time.Hour || (!ok && d != 0) {
			t.Fatalf("RetryAfter(%q) = %v %v", v, d, ok)
		}
	})
}

// FuzzParseRateLimit: any header values; never a panic.
func FuzzParseRateLimit(f *testing.F) {
	f.Add("30", "0", "1893456000", "Mon, 01 Jan 2030 00:00:00 GMT", "b=per_hour;q=10;r=7;t=3540")
	f.Add("x", "-1", "-5", "", "")
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, limit, remaining, reset, date, quota string) {
		h := http.Header{}
		h.Set("X-RateLimit-Limit", limit)
		h.Set("X-RateLimit-Remaining", remaining)
		h.Set("X-RateLimit-Reset", reset)
		h.Set("Date", date)
		h.Set("Auth0-Client-Quota-Limit", quota)
		ParseRateLimit(h, now)
		ParseQuotas(h)
	})
}

// FuzzParseQuota: any Auth0 quota header. Never a panic; at most
// MaxQuotaBuckets buckets, each with a short name of safe characters, a
// limit, non-negative numbers and a bounded reset.
func FuzzParseQuota(f *testing.F) {
	for _, s := range []string{
		"b=per_hour;q=10;r=7;t=3540",
		"b=per_hour;q=10;r=7;t=3540,b=per_day;q=100;r=93;t=86340",
		"b=per_hour;q=10;r=0;t=12",
		" B = per_day ; Q=1 ",
		"b=per_hour;q=;r=;t=,,,;;;",
		"b=x;q=9223372036854775807;r=9223372036854775807;t=9223372036854775807",
		"b=\xff;q=1",
		strings.Repeat("b=a;q=1,", 20),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		qs := ParseQuota(v)
		if len(qs) > MaxQuotaBuckets {
			t.Fatalf("%d buckets", len(qs))
		}
		for _, q := range qs {
			if !validBucket(q.Bucket) || q.Limit < 0 || q.Remaining < 0 || q.ResetIn < 0 || q.ResetIn > maxQuotaReset {
				t.Fatalf("ParseQuota(%q): bucket %+v", v, q)
			}
		}
	})
}
