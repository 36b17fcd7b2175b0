// The hints of the library's errors, as the command's users see them:
// naming the flag, variable or config-file field that the user set, and
// never a Config field they cannot reach.

package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHintsNameWhatWasSet: each message names the setting as the user
// gave it: the secret's file (flag or variable), the organization, the
// DPoP key; and a setting the command has no flag for is not named.
func TestHintsNameWhatWasSet(t *testing.T) {
	s := issuer(t)
	wrong := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(wrong, []byte("wrong-"+secret+"\n"), 0o600)
	base := []string{"AUTH0_CLIENT_ID=cli", "AUTH0_AUDIENCE=" + aud, "M2MTOKEN_TOKEN_URL=" + s.TokenURL()}

	// An endpoint that answers a DPoP-bound token to a request without a
	// proof, and one whose 1-second token arrives after more than a second.
	dpop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"access_token":"opaque-1","token_type":"DPoP","expires_in":3600}`)
	}))
	t.Cleanup(dpop.Close)
	late := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(1100 * time.Millisecond) // more than the token's whole life
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"access_token":"opaque-2","token_type":"Bearer","expires_in":1}`)
	}))
	t.Cleanup(late.Close)

	for _, tt := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"--client-secret-file", base, []string{"--client-secret-file", wrong},
			"check the client ID, the client secret, and that the application's token endpoint authentication method is client_secret_post: " +
				"AUTH0_CLIENT_ID, --client-secret-file and --auth-method or M2MTOKEN_AUTH_METHOD)"},
		{"AUTH0_CLIENT_SECRET_FILE", append(base, "AUTH0_CLIENT_SECRET_FILE="+wrong), nil,
			"AUTH0_CLIENT_ID, AUTH0_CLIENT_SECRET_FILE and --auth-method or M2MTOKEN_AUTH_METHOD)"},
		{"organization", append(base, "AUTH0_CLIENT_SECRET="+secret), []string{"--organization", "acme"},
			`400 Bad Request: invalid_request: Client "cli" is not a member of organization "acme" (the application may not get tokens for this organization: ` +
				"check --organization (the organization's ID, org_..., or its name as the tenant spells it), and give the application access for this API " +
				"in Auth0: Organizations, the organization, Machine-to-Machine Access)"},
		{"DPoP-bound answer", []string{"AUTH0_CLIENT_ID=cli", "AUTH0_CLIENT_SECRET=" + secret, "M2MTOKEN_TOKEN_URL=" + dpop.URL}, nil,
			"the endpoint answered a DPoP-bound token to a request without a DPoP proof: give the client a DPoP key with --dpop-key-file or M2MTOKEN_DPOP_KEY_FILE"},
		{"token too late", []string{"AUTH0_CLIENT_ID=cli", "AUTH0_CLIENT_SECRET=" + secret, "M2MTOKEN_TOKEN_URL=" + late.URL}, nil,
			": check the endpoint's latency and the clocks\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := runIn(t, tt.env, append([]string{"token", "--no-cache"}, tt.args...)...)
			if r.code != 1 || !strings.Contains(r.stderr, tt.want) || strings.Contains(r.stderr, "Config.") || strings.Contains(r.stderr, "AUTH0_CLIENT_SECRET ") {
				t.Fatalf("exit %d, stderr:\n%s\nwant it to hold:\n%s", r.code, r.stderr, tt.want)
			}
		})
	}
}

// TestAgentHintsNameWhatWasSet: the agent's log names the secret's file
// as the user gave it: --client-secret-file, or the config file's
// "client_secret_file" or "client_secret_env" (with its variable).
func TestAgentHintsNameWhatWasSet(t *testing.T) {
	s := issuer(t)
	dir := t.TempDir()
	wrong := filepath.Join(dir, "secret")
	os.WriteFile(wrong, []byte("wrong-"+secret+"\n"), 0o600)
	source := func(secretField string) string {
		b, _ := json.Marshal(map[string]any{"sources": []map[string]any{{"name": "api", "token_url": s.TokenURL(), "client_id": "cli",
			"audience": aud, secretField: map[string]string{"client_secret_file": wrong, "client_secret_env": "API_SECRET"}[secretField]}}})
		f := filepath.Join(t.TempDir(), "agent.json")
		os.WriteFile(f, b, 0o600)
		return f
	}
	for _, tt := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"--client-secret-file", []string{"AUTH0_CLIENT_ID=cli", "AUTH0_AUDIENCE=" + aud, "M2MTOKEN_TOKEN_URL=" + s.TokenURL()},
			[]string{"--client-secret-file", wrong}, "AUTH0_CLIENT_ID, --client-secret-file and --auth-method or M2MTOKEN_AUTH_METHOD)"},
		{"client_secret_file", nil, []string{"--config", source("client_secret_file")}, `"client_id", "client_secret_file" and "auth_method")`},
		{"client_secret_env", []string{"API_SECRET=wrong-" + secret}, []string{"--config", source("client_secret_env")},
			`"client_id", "client_secret_env" (API_SECRET) and "auth_method")`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := launchAgent(t, tt.env, append(tt.args, "--listen", "127.0.0.1:0")...)
			rec := p.waitLog("token request failed")
			if e, _ := rec["error"].(string); !strings.Contains(e, tt.want) || strings.Contains(e, "AUTH0_CLIENT_SECRET ") || strings.Contains(e, "Config.") {
				t.Fatalf("error %q, want it to hold %q", e, tt.want)
			}
		})
	}
}
