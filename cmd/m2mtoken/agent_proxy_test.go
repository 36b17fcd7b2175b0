//go:build unix

// The agent command's proxy listeners: --proxy-require-header, and a
// proxy on a Unix socket from the flags or the config file.

package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAgentProxyListeners: --proxy-require-header makes a proxy on TCP
// refuse a request without "M2MToken-Agent: 1" (403), and serve one with
// it; with no proxy on TCP it is a usage error. The config file's
// "proxies" give a proxy on a Unix socket, which serves over the socket.
func TestAgentProxyListeners(t *testing.T) {
	s := issuer(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upstream %s auth=%v", r.URL.Path, r.Header.Get("Authorization") != "")
	}))
	t.Cleanup(up.Close)
	dir := t.TempDir()
	if r := runIn(t, tokenEnv(s, dir), "agent", "--proxy", "default=unix:"+filepath.Join(dir, "p.sock")+"="+up.URL, "--proxy-require-header"); r.code != 2 ||
		!strings.Contains(r.stderr, "--proxy-require-header is set but no --proxy listens on TCP") {
		t.Errorf("--proxy-require-header with a Unix socket only: exit %d %s", r.code, r.stderr)
	}

	p := startAgent(t, tokenEnv(s, dir), "--proxy", "default=127.0.0.1:0="+up.URL, "--proxy-require-header")
	prx := "http://" + p.addr("proxy") + "/v1/x"
	if code, body := get(t, http.DefaultClient, prx); code != 403 || !strings.Contains(body, "M2MToken-Agent: 1") {
		t.Errorf("without the header: %d %s", code, body)
	}
	req, _ := http.NewRequest("GET", prx, nil)
	req.Header.Set("M2MToken-Agent", "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "upstream /v1/x auth=true" {
		t.Errorf("with the header: %d %s", resp.StatusCode, b)
	}
	p.halt(os.Interrupt)

	sock := filepath.Join(dir, "api.sock")
	conf := filepath.Join(dir, "agent.json")
	os.WriteFile(conf, []byte(fmt.Sprintf(`{"sources": [{"name": "api", "token_url": %q, "client_id": "cli", "client_secret_env": "API_SECRET", "audience": %q}],
	  "proxies": [{"source": "api", "listen": "unix:%s", "upstream": %q}]}`, s.TokenURL(), aud, sock, up.URL)), 0o600)
	startAgent(t, []string{"API_SECRET=" + secret}, "--config", conf)
	if code, body := get(t, unixClient(t, sock), "http://localhost/v1/y"); code != 200 || body != "upstream /v1/y auth=true" {
		t.Errorf("the config file's proxy on a Unix socket: %d %s", code, body)
	}
}
