//go:build unix

package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
)

// echoedSecret is a client secret that form and Basic encoding change.
const echoedSecret = "echo+SECRET/canary=42&x"

// echoingIssuer is a token endpoint that copies each request, body and
// Authorization header, into its answer: error_description, Location and
// the body of a 5xx, in turn.
func echoingIssuer(t *testing.T) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		echo := string(body) + " " + r.Header.Get("Authorization")
		switch r.URL.Query().Get("as") {
		case "location":
			w.Header().Set("Location", "https://elsewhere.example/?"+echo)
			w.WriteHeader(http.StatusFound)
		case "5xx":
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, "upstream said: "+echo)
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]string{"error": "invalid_request", "error_description": "you sent " + echo})
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// secretForms is every form of echoedSecret a request carries it in.
func secretForms(clientID string) []string {
	return []string{echoedSecret, url.QueryEscape(echoedSecret),
		"Basic " + basicValue(clientID, echoedSecret), basicValue(clientID, echoedSecret)}
}

func basicValue(id, secret string) string {
	r, _ := http.NewRequest("GET", "/", nil)
	r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

func assertNoSecret(t *testing.T, where, out string) {
	t.Helper()
	for _, f := range secretForms("cli") {
		if strings.Contains(out, f) {
			t.Errorf("%s shows the secret (%q):\n%s", where, f, out)
		}
	}
}

// TestEchoedSecretNotShown runs the binary against a token endpoint that
// echoes its request (in its error description, a Location header or a
// 5xx body): the secret must not reach the command's stderr, the agent's
// logs, /healthz, /v1/stats or the proxy's 503 body, and the proxy's own
// error answers must carry no endpoint text at all.
func TestEchoedSecretNotShown(t *testing.T) {
	iss := echoingIssuer(t)
	for _, as := range []string{"description", "location", "5xx"} {
		for _, method := range []string{"post", "basic"} {
			env := []string{"M2MTOKEN_TOKEN_URL=" + iss.URL + "/oauth/token?as=" + as, "AUTH0_CLIENT_ID=cli",
				"AUTH0_CLIENT_SECRET=" + echoedSecret, "AUTH0_AUDIENCE=" + aud, "M2MTOKEN_AUTH_METHOD=" + method}
			r := runBin(t, env, "token", "--no-cache", "--timeout", "1s")
			if r.code == 0 {
				t.Fatalf("token: exit 0")
			}
			assertNoSecret(t, "m2mtoken token ("+as+", "+method+") stderr", r.stderr)
		}
	}

	env := []string{"M2MTOKEN_TOKEN_URL=" + iss.URL + "/oauth/token", "AUTH0_CLIENT_ID=cli",
		"AUTH0_CLIENT_SECRET=" + echoedSecret, "AUTH0_AUDIENCE=" + aud, "M2MTOKEN_AUTH_METHOD=basic"}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	p := launchAgent(t, env, "--listen", "unix:"+sock, "--proxy", "default=127.0.0.1:0=http://127.0.0.1:1/api")
	p.waitLog("token request failed")
	prx := p.addr("proxy")
	uc := unixClient(t, sock)
	_, health := get(t, uc, "http://localhost/healthz")
	_, stats := get(t, uc, "http://localhost/v1/stats")
	_, tok := get(t, uc, "http://localhost/v1/token/default")
	tc := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(tc.CloseIdleConnections)
	code, proxied := get(t, tc, "http://"+prx+"/x")
	if code != http.StatusServiceUnavailable {
		t.Errorf("proxy: %d %s; want 503", code, proxied)
	}
	if strings.Contains(proxied, "invalid_request") || strings.Contains(proxied, "you sent") {
		t.Errorf("the proxy's 503 carries the endpoint's text: %s", proxied)
	}
	for where, out := range map[string]string{"/healthz": health, "/v1/stats": stats, "/v1/token": tok, "the proxy's 503": proxied, "the agent's log": p.logs()} {
		assertNoSecret(t, where, out)
	}
	t.Logf("healthz: %s\nproxy: %s", health, proxied)
}
