package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAgentProxyTrustsTheCA: a private CA given once, as M2MTOKEN_CA_FILE,
// --ca-file or a source's "ca_file", is trusted by the agent's token
// requests and by its proxy to an https upstream under that CA: here
// serve --tls's issuer and API.
func TestAgentProxyTrustsTheCA(t *testing.T) {
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	served, lines := startServe(t, "--tls", "--ca-out", caFile, "--client-secret", secret)
	apiURL := servedAPI(lines)
	if !strings.HasPrefix(apiURL, "https://") {
		t.Fatalf("no API URL in %q", lines)
	}
	// Only what a user exports for the agent: not SSL_CERT_FILE, which
	// would make Go trust the CA alone, without the system's.
	env := []string{"AUTH0_DOMAIN=" + served["AUTH0_DOMAIN"], "AUTH0_CLIENT_ID=" + served["AUTH0_CLIENT_ID"],
		"AUTH0_CLIENT_SECRET=" + served["AUTH0_CLIENT_SECRET"], "AUTH0_AUDIENCE=" + served["AUTH0_AUDIENCE"]}
	conf := filepath.Join(t.TempDir(), "agent.json")
	source := func(extra string) string {
		return fmt.Sprintf(`{"sources": [{"name": "default", "domain": %q, "client_id": %q, "client_secret_env": "AUTH0_CLIENT_SECRET", "audience": %q%s}]}`,
			served["AUTH0_DOMAIN"], served["AUTH0_CLIENT_ID"], served["AUTH0_AUDIENCE"], extra)
	}
	for _, tt := range []struct {
		name  string
		env   []string
		file  string
		flags []string
	}{
		{"M2MTOKEN_CA_FILE", append(env, "M2MTOKEN_CA_FILE="+caFile), "", nil},
		{"--ca-file", env, "", []string{"--ca-file", caFile}},
		{"--ca-file with --config", env, source(""), []string{"--ca-file", caFile}},
		{"M2MTOKEN_CA_FILE with --config", append(env, "M2MTOKEN_CA_FILE="+caFile), source(""), nil},
		{"ca_file", env, source(fmt.Sprintf(`, "ca_file": %q`, caFile)), nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--proxy", "default=127.0.0.1:0=" + apiURL}, tt.flags...)
			if tt.file != "" {
				os.WriteFile(conf, []byte(tt.file), 0o600)
				args = append(args, "--config", conf)
			}
			p := startAgent(t, tt.env, args...)
			resp, err := http.Get("http://" + p.addr("proxy") + "/api/private")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(body), "Hello from a private endpoint") {
				t.Fatalf("through the proxy: %d %s\n%s", resp.StatusCode, body, p.logs())
			}
			if err := p.halt(os.Interrupt); err != nil {
				t.Fatal(err)
			}
		})
	}
}
