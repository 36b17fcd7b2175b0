//go:build unix

// The agent binary's SIGHUP with a config file: what only a real process
// shows (its signal, its log, its connections); each case of a reload is
// tested in-process, in internal/agent.

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// TestAgentBinaryReload starts the binary with a config file of two
// sources, edits the file (one source removed, one added, one kept) and
// sends SIGHUP: the log says what changed; the kept source serves the same
// token over the same connection, and made no new token request; the
// removed one is a 404, the added one serves its token. A file with a
// mistake then changes nothing, and the log says why; SIGTERM stops the
// agent as before.
func TestAgentBinaryReload(t *testing.T) {
	s := m2mtest.NewServer(
		m2mtest.Client{ID: "keep", Secret: secret, Audiences: []string{aud}},
		m2mtest.Client{ID: "gone", Secret: secret, Audiences: []string{aud}},
		m2mtest.Client{ID: "new", Secret: secret, Audiences: []string{"https://new/"}})
	t.Cleanup(s.Close)
	dir := t.TempDir()
	conf, sock := filepath.Join(dir, "agent.json"), filepath.Join(dir, "agent.sock")
	src := func(name, audience string) string {
		return fmt.Sprintf(`{"name": %q, "token_url": %q, "client_id": %q, "client_secret_env": "S", "audience": %q}`, name, s.TokenURL(), name, audience)
	}
	write := func(sources ...string) {
		t.Helper()
		if err := os.WriteFile(conf, []byte(`{"sources": [`+strings.Join(sources, ",\n")+`]}`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(src("keep", aud), src("gone", aud))
	p := launchBinary(t, nil, []string{"S=" + secret}, "--config", conf, "--listen", "unix:"+sock)
	p.waitLog("ready: every source holds a token")
	var dials atomic.Int32
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, Timeout: waitFor}
	token := func(name string) (int, string) {
		t.Helper()
		code, body := get(t, c, "http://localhost/v1/token/"+name)
		var ans struct {
			AccessToken string `json:"access_token"`
		}
		json.Unmarshal([]byte(body), &ans)
		return code, ans.AccessToken
	}
	fingerprint := func(name string) string {
		t.Helper()
		_, body := get(t, c, "http://localhost/v1/stats")
		var st struct {
			Sources map[string]struct {
				Token string `json:"token"`
			} `json:"sources"`
		}
		json.Unmarshal([]byte(body), &st)
		return st.Sources[name].Token
	}
	_, kept := token("keep")
	if code, _ := token("gone"); code != 200 {
		t.Fatalf("gone: %d", code)
	}
	before := fingerprint("keep")
	if before != m2mtoken.Fingerprint(kept) {
		t.Fatalf("stats: keep's token is %q", before)
	}

	write(src("keep", aud), src("new", "https://new/"))
	p.stop(syscall.SIGHUP)
	l := p.waitLog("config file reloaded")
	if fmt.Sprint(l["sources_added"], l["sources_removed"], l["sources_unchanged"], l["file"]) != fmt.Sprint([]any{"new"}, []any{"gone"}, 1, conf) {
		t.Errorf("the reload's line: %v", l)
	}
	if code, tok := token("keep"); code != 200 || tok != kept {
		t.Errorf("keep after the reload: %d, the same token: %v", code, tok == kept)
	}
	if after := fingerprint("keep"); after != before || s.ClientRequests("keep") != 1 {
		t.Errorf("keep: token %s, then %s; %d token requests, want 1", before, after, s.ClientRequests("keep"))
	}
	if code, _ := get(t, c, "http://localhost/v1/token/gone"); code != 404 {
		t.Errorf("the removed source: %d", code)
	}
	if code, tok := token("new"); code != 200 {
		t.Errorf("the added source: %d", code)
	} else if _, err := s.Verify(tok, "https://new/"); err != nil {
		t.Errorf("the added source's token: %v", err)
	}

	os.WriteFile(conf, []byte(`{"sources": [`+strings.Replace(src("keep", aud), `"audience"`, `"audiance"`, 1)+`]}`), 0o600)
	p.stop(syscall.SIGHUP)
	l = p.waitLog("config file not reloaded: the agent goes on with the configuration it has")
	if e := fmt.Sprint(l["error"]); !strings.Contains(e, `config file `+conf+`: sources[0]: unknown field "audiance": did you mean "audience"?`) {
		t.Errorf("the refused reload's line: %v", l)
	}
	if code, tok := token("keep"); code != 200 || tok != kept {
		t.Errorf("keep after a refused reload: %d", code)
	}
	if code, _ := token("new"); code != 200 {
		t.Errorf("new after a refused reload: %d", code)
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("%d connections to the socket; want one, kept across the reloads", n)
	}
	tr.CloseIdleConnections()
	if err := p.halt(syscall.SIGTERM); err != nil {
		t.Fatalf("exit: %v\n%s", err, p.logs())
	}
	if logs := p.logs(); strings.Contains(logs, secret) || strings.Contains(logs, kept) {
		t.Errorf("the log reveals the secret or a token:\n%s", logs)
	}
}
