// The token endpoint's handlers and the guards of its TCP listeners.

package agent

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestRefusal: the SSRF and DNS rebinding guards of TCP listeners.
func TestRefusal(t *testing.T) {
	for _, tc := range []struct {
		name    string
		host    string
		headers map[string]string
		header  bool
		want    string
	}{
		{"ok", "127.0.0.1:8080", map[string]string{agentHeader: "1"}, true, ""},
		{"ok localhost", "localhost:8080", map[string]string{agentHeader: "1"}, true, ""},
		{"ok ipv6", "[::1]:8080", map[string]string{agentHeader: "1"}, true, ""},
		{"ok proxy without header", "127.0.0.1:9000", nil, false, ""},
		{"no header", "127.0.0.1:8080", nil, true, agentHeader},
		{"header not 1", "127.0.0.1:8080", map[string]string{agentHeader: "true"}, true, agentHeader},
		{"rebinding", "evil.example:8080", map[string]string{agentHeader: "1"}, true, "not a loopback"},
		{"rebinding on the proxy", "evil.example:9000", nil, false, "not a loopback"},
		{"lan host", "10.0.0.1:8080", map[string]string{agentHeader: "1"}, true, "not a loopback"},
		{"no host", "", map[string]string{agentHeader: "1"}, true, "not a loopback"},
		{"origin", "127.0.0.1:8080", map[string]string{agentHeader: "1", "Origin": "https://evil.example"}, true, "browser"},
		{"null origin", "127.0.0.1:8080", map[string]string{"Origin": "null"}, false, "browser"},
		{"fetch metadata", "127.0.0.1:8080", map[string]string{"Sec-Fetch-Site": "cross-site"}, false, "browser"},
		{"forwarded", "127.0.0.1:8080", map[string]string{agentHeader: "1", "X-Forwarded-For": "1.2.3.4"}, true, "forwarded"},
		{"forwarded rfc7239", "127.0.0.1:8080", map[string]string{agentHeader: "1", "Forwarded": "for=1.2.3.4"}, true, "forwarded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/v1/token/default", nil)
			r.Host = tc.host
			for k, v := range tc.headers {
				r.Header.Set(k, v)
			}
			got := refusal(r, tc.header)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("refusal %q, want %q", got, tc.want)
			}
		})
	}
}

// TestAgentHandlers runs the endpoint in process against a test issuer.
func TestAgentHandlers(t *testing.T) {
	s := issuer(t)
	a, err := New(Config{Sources: []Source{source(s)}, Listeners: []Listener{{"127.0.0.1:0"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.closeSources()
	a.started = time.Now()
	srv := httptest.NewServer(a.guard(true, a.Handler()))
	defer srv.Close()
	c := client(t, "")
	get := func(path string, hdr bool) (int, string) {
		if hdr {
			return get(t, c, srv.URL+path, agentHeader, "1")
		}
		return get(t, c, srv.URL+path)
	}
	if code, body := get("/healthz", true); code != 503 || !strings.Contains(body, `"ready":false`) {
		t.Fatalf("healthz before a token: %d %s", code, body)
	}
	code, body := get("/v1/token/default", true)
	if code != 200 || !strings.Contains(body, `"token_type":"Bearer"`) || !strings.Contains(body, `"expires_in":86`) {
		t.Fatalf("token: %d %s", code, body)
	}
	code, body = get("/v1/token/default?url=https://api.example.com/x%3Fa%3Db&method=post", true)
	var ans tokenAnswer
	if code != 200 || json.Unmarshal([]byte(body), &ans) != nil || ans.Headers["Authorization"] != "Bearer "+ans.AccessToken {
		t.Fatalf("token with url: %d %s", code, body)
	}
	for q, want := range map[string]string{"?method=GET": "method goes with url", "?url=/relative": "absolute", "?url=ftp://x/": "absolute"} {
		if code, body := get("/v1/token/default"+q, true); code != 400 || !strings.Contains(body, want) {
			t.Errorf("%s: %d %s", q, code, body)
		}
	}
	if code, _ := get("/v1/token/default", false); code != 403 {
		t.Fatalf("without the header: %d", code)
	}
	if code, body := get("/v1/token/nope", true); code != 404 || !strings.Contains(body, `no source named \"nope\"`) {
		t.Fatalf("unknown source: %d %s", code, body)
	}
	if code, _ := get("/v2/other", true); code != 404 {
		t.Fatalf("unknown path: %d", code)
	}
	req, _ := http.NewRequest("POST", srv.URL+"/v1/token/default", nil)
	req.Header.Set(agentHeader, "1")
	if resp, err := c.Do(req); err != nil || resp.StatusCode != 405 {
		t.Fatalf("POST: %v %v", resp.StatusCode, err)
	} else {
		resp.Body.Close()
	}
	code, body = get("/v1/stats", true)
	if code != 200 || !strings.Contains(body, `"token_requests":1`) || !strings.Contains(body, `"refused":1`) || strings.Contains(body, secret) {
		t.Fatalf("stats: %d %s", code, body)
	}
}

// TestAgentHealthSaysWhy: with a wrong secret, /healthz is 503 and says
// what the token endpoint answered, without the secret.
func TestAgentHealthSaysWhy(t *testing.T) {
	s := issuer(t)
	src := source(s)
	src.Config.ClientSecret = "wrong-" + secret
	a := launchAgent(t, Config{Sources: []Source{src}, Listeners: []Listener{{"127.0.0.1:0"}}})
	// The outage's first line comes once a failed fetch is recorded.
	a.waitLog(1, "no token for source: its requests are refused until a fetch succeeds")
	rec := httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	body := rec.Body.String()
	if rec.Code != 503 || !strings.Contains(body, "401") || !strings.Contains(body, `"ready":false`) || strings.Contains(body, secret) {
		t.Fatalf("healthz: %d %s", rec.Code, body)
	}
}
