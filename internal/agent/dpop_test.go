//go:build unix

// A source whose tokens are bound to a DPoP key: the proxy signs a proof
// for each request, the token endpoint answers the headers of one request,
// and a sink is refused.

package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// TestAgentDPoP: a source with a DPoP key, for an API that requires DPoP.
// Through the proxy, Go and Python clients need no token code, proofs
// included; the token endpoint refuses a bare DPoP-bound token and
// answers the headers of one request when asked with ?url=; a sink is
// refused.
func TestAgentDPoP(t *testing.T) {
	s := m2mtest.NewServer(m2mtest.Client{ID: "dp", Secret: secret, Audiences: []string{aud}, RequireDPoP: true})
	t.Cleanup(s.Close)
	api := newProtectedAPI(t, s)
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	keyFile := filepath.Join(dir, "dpop.pem")
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	sources, _, err := parseConfigFile("agent.json", fmt.Appendf(nil, `{"sources": [{"name": "dp", "token_url": %q, "client_id": "dp",
	  "client_secret_env": "DP_SECRET", "audience": %q, "dpop_key_file": %q, "require_dpop": true}]}`, s.TokenURL(), aud, keyFile),
		func(v string) string {
			if v == "DP_SECRET" {
				return secret
			}
			return ""
		})
	if err != nil {
		t.Fatal(err)
	}

	_, err = New(Config{Sources: sources, Sinks: []Sink{{"dp", filepath.Join(dir, "tok")}}})
	var fe *FlagError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), `source "dp" binds its tokens to a DPoP key`) {
		t.Fatalf("a sink for a DPoP source: %v", err)
	}

	sock := filepath.Join(dir, "a.sock")
	a := startAgent(t, Config{Sources: sources, Listeners: []Listener{{"unix:" + sock}}, Proxies: []Proxy{{Source: "dp", Listen: "127.0.0.1:0", Upstream: api.URL}}})
	prx := a.proxy(0)
	uc, tc := client(t, sock), client(t, "")

	if code, body := get(t, tc, "http://"+prx+"/api/private"); code != 200 || !strings.Contains(body, `"message":"private"`) {
		t.Fatalf("through the proxy: %d %s", code, body)
	}
	runPython(t, `
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/api/private") as r:
    assert r.status == 200
with urllib.request.urlopen(urllib.request.Request(sys.argv[1] + "/echo", data=b"x\n" * 10, method="POST")) as r:
    assert r.read() == b"20"
print("ok")
`, "http://"+prx)

	if code, body := get(t, uc, "http://localhost/v1/token/dp"); code != 400 || !strings.Contains(body, "dpop_bound") || strings.Contains(body, "eyJ") {
		t.Fatalf("a bare DPoP-bound token: %d %s", code, body)
	}
	target := api.URL + "/api/private"
	code, body := get(t, uc, "http://localhost/v1/token/dp?method=GET&url="+url.QueryEscape(target))
	var ans tokenAnswer
	if code != 200 || json.Unmarshal([]byte(body), &ans) != nil || ans.TokenType != "DPoP" || ans.Headers["DPoP"] == "" ||
		ans.Headers["Authorization"] != "DPoP "+ans.AccessToken {
		t.Fatalf("headers for one request: %d %s", code, body)
	}
	headers := []string{"Authorization", ans.Headers["Authorization"], "DPoP", ans.Headers["DPoP"]}
	if code, body := get(t, tc, target, headers...); code != 200 {
		t.Fatalf("the API refused the agent's headers: %d %s", code, body)
	}
	if code, _ := get(t, tc, target, headers...); code != 401 {
		t.Fatalf("a replayed proof: %d, want 401", code)
	}
	uc.CloseIdleConnections()
	tc.CloseIdleConnections()
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	if logs := a.log.String(); strings.Contains(logs, secret) || strings.Contains(logs, ans.AccessToken) {
		t.Errorf("the log reveals the secret or the token:\n%s", logs)
	}
}
