package m2mtoken

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/m2mtoken/m2mtoken/internal/clock"
)

// FuzzEndpointURL: any Domain and TokenURL. Whatever New accepts is a URL
// that parses, uses https (or http to loopback), carries no credentials,
// and normalizes to itself.
func FuzzEndpointURL(f *testing.F) {
	for _, s := range [][2]string{
		{"tenant.eu.auth0.com", ""}, {"https://tenant.eu.auth0.com/", ""}, {"", "https://auth.example.com/oauth2/token?x=1"},
		{"", "http://127.0.0.1:8080/token"}, {"http://localhost", ""}, {"", "http://example.com/token"}, {"a b", ""}, {"", "https://u:p@h/"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, domain, tokenURL string) {
		out, err := endpointURL(domain, tokenURL)
		if err != nil {
			return
		}
		u, perr := url.Parse(out)
		if perr != nil {
			t.Fatalf("accepted %q does not parse: %v", out, perr)
		}
		if u.User != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname()))) {
			t.Fatalf("accepted unsafe %q", out)
		}
		if strings.TrimSpace(domain) != "" && u.Path != "/oauth/token" {
			t.Fatalf("domain %q gave path %q", domain, u.Path)
		}
		again, err := endpointURL("", out)
		if err != nil || again != out {
			t.Fatalf("%q normalizes to %q, %v", out, again, err)
		}
	})
}

// FuzzReadAnswer: any status, content type and body from the token
// endpoint. Never a panic, never a token with an empty access token or an
// expiry not after its issue time, never a token from a non-2xx answer.
func FuzzReadAnswer(f *testing.F) {
	f.Add(200, "application/json", []byte(`{"access_token":"a","token_type":"Bearer","expires_in":60}`))
	f.Add(200, "application/json", []byte(`{"access_token":"eyJhbGciOiJub25lIn0.eyJleHAiOjF9.x","token_type":"Bearer"}`))
	f.Add(429, "application/json", []byte(`{"error":"too_many_requests"}`))
	f.Add(302, "text/html", []byte(`<a href="x">`))
	f.Add(200, "application/x-www-form-urlencoded", []byte(`access_token=a&token_type=bearer&expires_in=-5`))
	f.Add(200, "application/json", []byte(`{"access_token":"00Dxx0000001gPL!AR8AQJXg5oj8jXSgxJfA0lBog.39AsX","token_type":"Bearer","expires_in":7200}`))
	f.Add(200, "application/json", []byte(`{"access_token":"AAAAAAAAAAAAAAAAAAAAAMLheAAAAAAA0%2BuSeid%2BULvsea4JtiGRiSDSJSI%3DEUif","token_type":"bearer"}`))
	f.Add(200, "application/json", []byte(`{"access_token":"tok\r\nX-Injected: 1","token_type":"Bearer"}`))
	s, err := newSource(Config{TokenURL: "https://auth.example.com/oauth/token", ClientID: "c", ClientSecret: "s"}, clock.Real{})
	if err != nil {
		f.Fatal(err)
	}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, status int, ct string, body []byte) {
		if status < 100 || status > 999 {
			return
		}
		resp := &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {ct}}, Body: io.NopCloser(bytes.NewReader(body))}
		ent, terr := s.readAnswer(resp, body, nil, now, now)
		if (ent == nil) == (terr == nil) {
			t.Fatal("want exactly one of a token and an error")
		}
		if ent != nil {
			if status < 200 || status > 299 {
				t.Fatalf("token from a %d", status)
			}
			if ent.AccessToken == "" || !ent.Expiry.After(ent.IssuedAt) || !ent.Valid() {
				t.Fatalf("accepted %v", ent)
			}
			if strings.ContainsFunc(ent.AccessToken, func(c rune) bool { return c < '!' || c > '~' }) {
				t.Fatalf("accepted a token that is not visible ASCII: %q", ent.AccessToken)
			}
		}
		if terr != nil {
			_ = terr.Error()
		}
	})
}

// FuzzEntryUnmarshalBinary: any stored entry (a cache file, a Redis
// value); never a panic, never an entry that is not Valid.
func FuzzEntryUnmarshalBinary(f *testing.F) {
	f.Add([]byte(`{"v":1,"entry":{"access_token":"x","token_type":"Bearer","issued_at":"2030-01-01T00:00:00Z","expiry":"2030-01-02T00:00:00Z"}}`))
	f.Add([]byte(`{"v":1,"entry":null}`))
	f.Add([]byte(`{"v":1,"entry":{"access_token":"x","issued_at":"2030-01-02T00:00:00Z","expiry":"2030-01-01T00:00:00Z"}}`))
	f.Add([]byte("\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var e Entry
		err := e.UnmarshalBinary(b)
		if err != nil && !cmp.Equal(e, Entry{}) {
			t.Fatalf("changed the entry on error %v", err)
		}
		if err == nil && !e.Valid() {
			t.Fatalf("accepted %v", &e)
		}
	})
}
