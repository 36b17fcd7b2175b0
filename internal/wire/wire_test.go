package wire

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseToken(t *testing.T) {
	tests := []struct {
		name, ct, body string
		wantTok        string
		wantIn         time.Duration
		wantErrCode    string
		wantMalformed  bool
	}{
		{name: "auth0", ct: "application/json", body: `{"access_token":"eyJ","token_type":"Bearer","expires_in":86400}`, wantTok: "eyJ", wantIn: 24 * time.Hour},
		{name: "string expires_in", ct: "application/json; charset=utf-8", body: `{"access_token":"a","token_type":"bearer","expires_in":"60"}`, wantTok: "a", wantIn: time.Minute},
		{name: "fractional", ct: "application/json", body: `{"access_token":"a","token_type":"BEARER","expires_in":1.5}`, wantTok: "a", wantIn: 1500 * time.Millisecond},
		{name: "negative", ct: "application/json", body: `{"access_token":"a","token_type":"Bearer","expires_in":-5}`, wantTok: "a"},
		{name: "garbage expires_in", ct: "application/json", body: `{"access_token":"a","token_type":"Bearer","expires_in":"soon"}`, wantTok: "a"},
		{name: "clamped", ct: "application/json", body: `{"access_token":"a","token_type":"Bearer","expires_in":99999999999}`, wantTok: "a", wantIn: maxExpiresIn},
		{name: "no content type", ct: "", body: `{"access_token":"a","token_type":"Bearer"}`, wantTok: "a"},
		{name: "form", ct: "application/x-www-form-urlencoded", body: `access_token=f&token_type=bearer&expires_in=10`, wantTok: "f", wantIn: 10 * time.Second},
		{name: "error in 200", ct: "application/json", body: `{"error":"invalid_client","error_description":"x"}`, wantErrCode: "invalid_client"},
		{name: "error in form 200", ct: "application/x-www-form-urlencoded", body: `error=access_denied`, wantErrCode: "access_denied"},
		{name: "empty", ct: "application/json", body: ``, wantMalformed: true},
		{name: "blank", ct: "application/json", body: " \n ", wantMalformed: true},
		{name: "object", ct: "application/json", body: `{}`, wantMalformed: true},
		{name: "null token", ct: "application/json", body: `{"access_token":null,"token_type":"Bearer"}`, wantMalformed: true},
		{name: "number token", ct: "application/json", body: `{"access_token":5,"token_type":"Bearer"}`, wantMalformed: true},
		{name: "spaces token", ct: "application/json", body: `{"access_token":"  ","token_type":"Bearer"}`, wantMalformed: true},
		{name: "mac", ct: "application/json", body: `{"access_token":"a","token_type":"mac"}`, wantMalformed: true},
		{name: "no type", ct: "application/json", body: `{"access_token":"a"}`, wantMalformed: true},
		{name: "truncated", ct: "application/json", body: `{"access_token":"a","token_t`, wantMalformed: true},
		{name: "html", ct: "text/html", body: `<html><body>502</body></html>`, wantMalformed: true},
		{name: "array", ct: "application/json", body: `[{"access_token":"a"}]`, wantMalformed: true},
		{name: "null", ct: "application/json", body: `null`, wantMalformed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, eb, err := ParseToken(tt.ct, []byte(tt.body))
			if tt.wantMalformed {
				if _, ok := err.(*MalformedError); !ok || r != nil {
					t.Fatalf("got %+v %v %v, want a MalformedError", r, eb, err)
				}
				return
			}
			if tt.wantErrCode != "" {
				if eb == nil || eb.Code != tt.wantErrCode || r != nil {
					t.Fatalf("got %+v %+v %v, want error %q", r, eb, err, tt.wantErrCode)
				}
				return
			}
			if err != nil || eb != nil {
				t.Fatalf("unexpected %v %v", eb, err)
			}
			if diff := cmp.Diff([]any{tt.wantTok, "Bearer", tt.wantIn}, []any{r.AccessToken, r.TokenType, r.ExpiresIn}); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if _, ok := r.Extra["access_token"]; ok {
				t.Error("Extra holds the access token")
			}
		})
	}
}

// realTokens are access tokens that real issuers send, each beyond RFC
// 6750's b64token: they must be taken as they are.
var realTokens = map[string]string{
	// Salesforce (client-credentials flow): the org ID, '!', then the rest.
	"salesforce": "00Dxx0000001gPL!AR8AQJXg5oj8jXSgxJfA0lBog.39AsX_KUYr0hbXLqWvvhDBH3aJdJfsVrIsS0dZcbuA2cDHtLHqMcGM3gM_3zjLu7B0yeR.GBFpMnUrr4Ge6qKomhx3",
	// X (Twitter) app-only bearer token: percent-encoded '+' and '='.
	"x app-only": "AAAAAAAAAAAAAAAAAAAAAMLheAAAAAAA0%2BuSeid%2BULvsea4JtiGRiSDSJSI%3DEUifiRBkKG5E2XzMDjRfl76ZC9Ub0wnz4XsNiRVBChTYbJcE3F",
	"colon":      "a:b",
	"comma":      "a,b",
	"jwt":        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
	// Every visible ASCII character, quotes and backslash included.
	"every visible": func() string {
		var b strings.Builder
		for c := byte(0x21); c <= 0x7e; c++ {
			b.WriteByte(c)
		}
		return b.String()
	}(),
}

// dangerousTokens are tokens with a byte that could end a header or hide
// in one: every control character, DEL, a space, and bytes outside ASCII.
func dangerousTokens() map[string]string {
	out := map[string]string{
		"space":        "INJ X-Injected",
		"CRLF":         "INJ\r\nX-Injected: 1",
		"NUL":          "INJ\x00x",
		"DEL":          "INJ\x7f",
		"e acute":      "INJ\u00e9",
		"NBSP":         "INJ\u00a0x",
		"zero width":   "INJ\u200bx",
		"invalid 0xff": "INJ\xffx",
	}
	for c := 0; c < 0x20; c++ {
		out[fmt.Sprintf("0x%02x", c)] = "INJ" + string(rune(c)) + "x"
	}
	return out
}

// TestTokenCharacters: every real issuer's token shape is accepted as it
// is; every dangerous byte is refused, as a BadToken that quotes nothing.
func TestTokenCharacters(t *testing.T) {
	for name, tok := range realTokens {
		r, eb, err := ParseToken("application/json", tokenBody(tok))
		if err != nil || eb != nil || r.AccessToken != tok {
			t.Errorf("%s: %v %v, want the token %q", name, eb, err, tok)
		}
	}
	for name, tok := range dangerousTokens() {
		r, _, err := ParseToken("application/json", tokenBody(tok))
		me, ok := err.(*MalformedError)
		if r != nil || !ok || !me.BadToken || strings.Contains(err.Error(), "INJ") {
			t.Errorf("%s: got %+v, %v; want a BadToken error that quotes nothing", name, r, err)
		}
	}
	_, _, err := ParseToken("application/json", tokenBody("tok\r\n"))
	want := "malformed token response: the access_token cannot go in an Authorization header: it has a control character (such as CR or LF), a space or a byte outside ASCII; a token is visible ASCII only (0x21-0x7E)"
	if err == nil || err.Error() != want {
		t.Errorf("message:\n%v\nwant\n%s", err, want)
	}
}

func TestMalformedNeverQuotesBody(t *testing.T) {
	_, _, err := ParseToken("application/json", []byte(`{"access_token":"SECRET-TOKEN","token_type":"SECRET-TYPE-`))
	if err == nil || strings.Contains(err.Error(), "SECRET") {
		t.Fatalf("err %v", err)
	}
}

func TestParseError(t *testing.T) {
	eb := ParseError("application/json", []byte(`{"error":"access_denied","error_description":"Unauthorized","error_uri":"https://x"}`))
	if diff := cmp.Diff(&ErrorBody{Code: "access_denied", Description: "Unauthorized", URI: "https://x"}, eb); diff != "" {
		t.Error(diff)
	}
	if ParseError("text/html", []byte("<html>")) != nil {
		t.Error("html parsed as an error body")
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"", 0, false},
		{"5", 5 * time.Second, true},
		{" 0 ", 0, true},
		{"-1", 0, false},
		{"999999999", 24 * time.Hour, true},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"Tuesday, 01-Jan-30 00:00:10 GMT", 10 * time.Second, true},
		{"soon", 0, false},
	}
	for _, tt := range tests {
		got, ok := RetryAfter(tt.in, now)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("RetryAfter(%q) = %v %v, want %v %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestParseRateLimit(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	server := now.Add(-10 * time.Minute) // server clock 10 min behind
	h := http.Header{}
	h.Set("X-RateLimit-Limit", "30")
	h.Set("X-RateLimit-Remaining", "0")
	h.Set("X-RateLimit-Reset", strconv.FormatInt(server.Add(5*time.Second).Unix(), 10))
	h.Set("Date", server.Format(http.TimeFormat))
	h.Set("Auth0-Client-Quota-Limit", "b=per_hour;q=10;r=7;t=3540")
	rl, ok := ParseRateLimit(h, now)
	want := RateLimit{Limit: 30, Remaining: 0, Reset: now.Add(5 * time.Second)}
	if !ok {
		t.Fatal("not ok")
	}
	if diff := cmp.Diff(want, rl); diff != "" {
		t.Error(diff)
	}
	if _, ok := ParseRateLimit(http.Header{}, now); ok {
		t.Error("empty header reported ok")
	}
}

// TestMalformedPartial: only a body that looks cut short may be worth
// asking again for; a complete answer that is not a token is not.
func TestMalformedPartial(t *testing.T) {
	for body, want := range map[string]bool{
		``:                                       true,
		`{"access_token":"a","token_t`:           true,
		`{"access_token":"a",`:                   true,
		`<html><body>Log in</body></html>`:       false,
		`{"token_type":"Bearer","expires_in":5}`: false,
		`{}`:                                     false,
		`{oops}`:                                 false,
		`[1]`:                                    false,
		`{"access_token":"a"}`:                   false,
	} {
		_, _, err := ParseToken("application/json", []byte(body))
		me, ok := err.(*MalformedError)
		if !ok || me.Partial != want {
			t.Errorf("%q: %#v, want Partial %v", body, err, want)
		}
	}
}

func TestParseQuota(t *testing.T) {
	tests := []struct {
		in   string
		want []Quota
	}{
		{"", nil},
		{"b=per_hour;q=10;r=7;t=3540", []Quota{{"per_hour", 10, 7, 3540 * time.Second}}},
		{"b=per_hour;q=10;r=7;t=3540,b=per_day;q=100;r=93;t=86340", []Quota{
			{"per_hour", 10, 7, 3540 * time.Second}, {"per_day", 100, 93, 86340 * time.Second}}},
		{" b = per_hour ; q=10 ; r=0 ; t=5 , ", []Quota{{"per_hour", 10, 0, 5 * time.Second}}},
		{"Q=3;B=per_day", []Quota{{"per_day", 3, 3, 0}}},                                          // any order and case; r defaults to q
		{"b=per_hour;q=10;r=7;t=3540;x=1;junk", []Quota{{"per_hour", 10, 7, 3540 * time.Second}}}, // unknown keys ignored
		{"b=per_hour;r=7", nil},  // no limit
		{"q=10;r=7", nil},        // no bucket
		{"b=per hour;q=10", nil}, // bad name
		{"b=per_hour;q=-1", nil}, // negative
		{"b=per_hour;q=10;r=x,b=per_day;q=5", []Quota{{"per_day", 5, 5, 0}}}, // the bad bucket only
		{"b=y;q=1;t=999999999999", []Quota{{"y", 1, 1, maxQuotaReset}}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, ParseQuota(tt.in)); diff != "" {
			t.Errorf("ParseQuota(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
	h := http.Header{}
	h.Set("Auth0-Organization-Quota-Limit", "b=per_day;q=100;r=0;t=60")
	c, o, ok := ParseQuotas(h)
	if !ok || c != nil || len(o) != 1 || o[0].Remaining != 0 {
		t.Errorf("ParseQuotas = %v %v %v", c, o, ok)
	}
	if _, _, ok := ParseQuotas(http.Header{}); ok {
		t.Error("no quota headers reported ok")
	}
}
